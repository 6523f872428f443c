# 12:00:02 by RouterOS 7.18.2
# software id = SIM-0000
#
# model = CHR
/ip address
add address=10.0.0.1/24 comment=uplink interface=ether1 network=10.0.0.0
add address=192.168.88.1/24 interface=ether2 network=192.168.88.0
/ip firewall filter
add chain=input comment="accept established" connection-state=established,related
add chain=input protocol=icmp
add action=drop chain=input comment="drop wan" in-interface=ether1
/system script
add name=hello owner=admin source=":log info \"hello\""
/system identity
set name=edge-7
