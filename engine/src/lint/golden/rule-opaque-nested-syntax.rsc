/system script add name=broken source="/ip firewall filter add chain=input { "
