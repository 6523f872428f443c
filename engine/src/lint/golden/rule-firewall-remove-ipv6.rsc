/ipv6 firewall filter remove [find chain=input]
