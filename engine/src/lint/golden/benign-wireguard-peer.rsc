/interface wireguard add name=wg-hq listen-port=13231
/interface wireguard peers add interface=wg-hq public-key="bm90IGEgcmVhbCBrZXkgYnV0IGxvb2tzIGxpa2Ugb25l" allowed-address=10.200.0.0/24 endpoint-address=203.0.113.1 endpoint-port=13231
/ip address add address=10.200.0.7/24 interface=wg-hq
