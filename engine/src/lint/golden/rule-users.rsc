/user remove [find name=admin]
/user disable bob
/user set alice group=read
/user group set full policy=read
/user add name=carol group=full password=x
