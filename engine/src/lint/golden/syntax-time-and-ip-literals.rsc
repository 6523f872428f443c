:local t 1d2h3m
:local ip 10.0.0.1
:local net 10.0.0.0/8
:local v6 2001:db8::1
:put ($ip in $net)
:put $t
:put $v6
