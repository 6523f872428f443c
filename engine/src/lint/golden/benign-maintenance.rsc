# nightly maintenance
:local name [/system identity get name]
:local date [/system clock get date]
/system backup save name=("nightly-" . $name) dont-encrypt=no
/export file=("nightly-" . $name)
:foreach f in=[/file find where name~"nightly-.*\\.old"] do={
  :log info ("stale backup " . [/file get $f name])
}
/ip dns cache flush
:log info "maintenance done on $name"
