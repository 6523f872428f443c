/ip route remove [find dst-address=10.50.0.0/16]
