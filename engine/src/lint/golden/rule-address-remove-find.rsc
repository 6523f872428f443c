/ip address remove [find interface=ether1]
