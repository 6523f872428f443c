/interface bridge port add bridge=bridge interface=ether5 pvid=20
/interface bridge vlan add bridge=bridge vlan-ids=20 tagged=bridge untagged=ether5
