/ip address add address =10.0.0.1/24 interface=ether1
