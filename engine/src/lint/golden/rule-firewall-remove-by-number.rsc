/ip firewall filter remove 3
