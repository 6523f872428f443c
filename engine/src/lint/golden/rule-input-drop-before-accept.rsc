/ip firewall filter add chain=input action=drop in-interface=ether1
/ip firewall filter add chain=input action=accept src-address=10.0.0.0/8
