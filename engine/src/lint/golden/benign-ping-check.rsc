:local ok [/ping 8.8.8.8 count=3]
:if ($ok = 0) do={
  :log error "upstream unreachable"
} else={
  :log info ("upstream answered " . $ok . " of 3")
}
