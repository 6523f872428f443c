/ip hotspot user add name=guest1 password=welcome limit-uptime=1h
