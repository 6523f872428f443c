/ip firewall filter remove [find]
/ip firewall filter disable [find where chain=input]
/ip firewall filter remove 3
