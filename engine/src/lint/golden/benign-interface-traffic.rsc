:foreach i in=[/interface find where running] do={
  :local n [/interface get $i name]
  :local rx [/interface get $i rx-byte]
  :put ($n . " " . $rx)
}
