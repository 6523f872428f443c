:for i from=10 to=0 step=-2 do={ :put $i }
