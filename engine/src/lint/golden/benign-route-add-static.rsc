/ip route add dst-address=10.50.0.0/16 gateway=10.0.0.2 comment="branch 50"
/ip route set [find comment="branch 50"] distance=5
