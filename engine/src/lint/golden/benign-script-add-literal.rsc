/system script add name=heartbeat source=":log info \"alive\""
/system scheduler add name=heartbeat interval=1h on-event="/system script run heartbeat"
