# 2024-05-01 08:00:00 by RouterOS 7.14.3
# software id = 7X2Q-KL9P
#
/interface bridge
add name=bridge vlan-filtering=no
/interface vlan
add interface=bridge name=mgmt vlan-id=99
/ip address
add address=10.99.0.7/24 interface=mgmt network=10.99.0.0
/ip route
add gateway=10.99.0.1
/ip service
set telnet disabled=yes
set ftp disabled=yes
/system note
set show-at-login=no
