/interface bridge add name=br-trunk vlan-filtering=yes
