:put [/ip address get [find interface=[/interface get [find default-name=ether1] name]] address]
