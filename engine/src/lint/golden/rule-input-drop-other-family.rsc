/ip firewall filter add chain=input action=accept protocol=tcp dst-port=22
/ipv6 firewall filter add chain=input action=drop
