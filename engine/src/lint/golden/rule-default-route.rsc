/ip route remove [find dst-address=0.0.0.0/0]
/ip route set [find where dst-address=0.0.0.0/0] gateway=10.0.0.2
/ip route remove [find dst-address=10.1.0.0/16]
/ip route add dst-address=0.0.0.0/0 gateway=10.0.0.1
