/ip address set [find address="10.0.0.1/24"] interface=vlan99
/ip address set [find address="10.0.0.1/24"] comment="uplink"
