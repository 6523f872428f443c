/ip firewall filter add chain=forward \
    action=accept \
    comment="long"
