/ppp profile add name=vpn local-address=10.66.0.1 remote-address=vpn-pool
/ppp secret add name=alice password="s3cret" profile=vpn service=l2tp
