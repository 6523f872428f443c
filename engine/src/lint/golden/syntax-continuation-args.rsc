/ip firewall filter add chain=forward \
    action=accept \
    protocol=tcp \
    dst-port=443
