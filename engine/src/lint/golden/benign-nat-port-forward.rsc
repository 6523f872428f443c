/ip firewall nat add chain=dstnat action=dst-nat protocol=tcp dst-port=8443 to-addresses=192.168.88.20 to-ports=443 in-interface-list=WAN
