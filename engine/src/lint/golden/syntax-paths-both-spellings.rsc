/ip firewall filter add chain=forward action=accept
/ip/firewall/filter/add chain=forward action=accept
