/ip firewall filter
add chain=input action=accept connection-state=established,related
add chain=input action=accept protocol=tcp dst-port=22,8291
add chain=input action=drop
