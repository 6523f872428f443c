/ip route disable [find dst-address=0.0.0.0/0]
