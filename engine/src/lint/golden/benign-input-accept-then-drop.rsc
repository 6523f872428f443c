/ip firewall filter
add chain=input action=accept connection-state=established,related,untracked
add chain=input action=accept src-address=10.0.0.0/8 comment="management"
add chain=input action=drop
