:foreach i in=[/interface find] do={ :put [/interface get $i name] }
:for n from=1 to=3 do={ :put $n }
:put $i
