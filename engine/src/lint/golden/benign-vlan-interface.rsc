/interface vlan add name=vlan20 vlan-id=20 interface=bridge
/ip address add address=10.20.0.1/24 interface=vlan20
/ip pool add name=pool20 ranges=10.20.0.100-10.20.0.200
/ip dhcp-server add name=dhcp20 interface=vlan20 address-pool=pool20
