/ip firewall filter add chain=input action=drop
