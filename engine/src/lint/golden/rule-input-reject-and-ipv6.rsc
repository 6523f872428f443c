/ip firewall filter
add chain=forward action=drop
add chain=input action=reject reject-with=icmp-admin-prohibited
/ipv6 firewall filter add chain=input action=accept protocol=icmpv6
/ipv6 firewall filter add chain=input action=drop
