/ip/firewall/filter/add chain=input action=reject reject-with=icmp-admin-prohibited
