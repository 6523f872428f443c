:local s "x"
/system script add name=s source=$s
/system scheduler add name=n on-event=("/log info " . $s)
