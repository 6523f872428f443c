/ipv6 address disable [find global]
