:local tries 0
:while ([/interface get [find name=ether1] running] = false && $tries < 10) do={
  :delay 2s
  :set tries ($tries + 1)
}
