/interface bridge set bridge vlan-filtering=yes
/interface bridge set bridge vlan-filtering=no
