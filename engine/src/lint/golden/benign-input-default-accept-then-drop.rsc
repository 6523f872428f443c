/ip firewall filter
add chain=input connection-state=established,related comment="accept is the default action"
add chain=input action=drop in-interface-list=WAN
