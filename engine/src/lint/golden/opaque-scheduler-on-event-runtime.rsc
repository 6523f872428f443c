:local body ("/log info " . [/system identity get name])
/system scheduler add name=tell on-event=$body interval=1d
