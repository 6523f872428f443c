/interface ethernet set [find default-name=ether1] comment="uplink to ISP"
/interface ethernet set ether2 comment="LAN switch"
