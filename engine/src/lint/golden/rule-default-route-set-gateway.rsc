/ip route set [find dst-address="0.0.0.0/0"] gateway=192.0.2.254
