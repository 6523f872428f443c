:foreach r in=[/ip route find where dynamic and !disabled and gateway~"10\\."] do={
  :put [/ip route get $r dst-address]
}
