/interface bridge set bridge1 vlan-filtering=yes
/interface bridge add name=br2 vlan-filtering=no
