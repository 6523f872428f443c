:local site "vienna-07"
/system identity set name=("edge-" . $site)
:log info ("identity set to edge-" . $site)
