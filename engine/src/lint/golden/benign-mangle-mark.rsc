/ip firewall mangle add chain=prerouting action=mark-connection new-connection-mark=voip protocol=udp dst-port=5060 passthrough=yes
