:local arr {a=1;b=2}
:foreach k,v in=$arr do={ :put ($k . "=" . $v) }
:put $k
