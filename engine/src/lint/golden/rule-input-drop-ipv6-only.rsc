/ip firewall filter add chain=input action=accept
/ipv6 firewall filter add chain=input action=drop
