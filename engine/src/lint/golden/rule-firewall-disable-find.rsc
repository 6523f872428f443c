/ip firewall filter disable [find comment~"defconf"]
