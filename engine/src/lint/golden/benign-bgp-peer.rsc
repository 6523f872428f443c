/routing bgp connection add name=upstream remote.address=192.0.2.1 remote.as=64500 local.role=ebgp as=64512
