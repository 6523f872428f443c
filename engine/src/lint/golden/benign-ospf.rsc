/routing ospf instance add name=default-v2 router-id=10.255.0.7
/routing ospf area add name=backbone area-id=0.0.0.0 instance=default-v2
/routing ospf interface-template add area=backbone networks=10.0.0.0/8
