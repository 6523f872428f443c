:local f [:parse ":log info \"parsed\""]
$f
