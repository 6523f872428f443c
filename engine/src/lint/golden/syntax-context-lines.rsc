/ip firewall filter
add chain=forward action=accept comment="ok"
add chain=forward action=drop
/ip firewall nat
add chain=srcnat action=masquerade out-interface=ether1
