/snmp community set [find default=yes] name=monitoring addresses=10.10.0.0/16
/snmp set enabled=yes contact="noc@example.net" location="rack 4"
