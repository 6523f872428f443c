:local m {"ether1"="uplink";"ether2"="lan"}
:foreach k,v in=$m do={ /interface ethernet set [find default-name=$k] comment=$v }
