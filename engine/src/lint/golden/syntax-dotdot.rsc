/ip firewall filter
..
nat add chain=srcnat action=masquerade
/system reset
..
/system
reset-configuration
