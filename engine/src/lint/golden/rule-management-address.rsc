/ip address remove [find interface=ether1]
/ip address set 0 address=10.9.9.9/24
/ip address add address=192.168.1.1/24 interface=bridge
