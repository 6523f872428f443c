/system scheduler add name=wipe interval=1d on-event="/system reset-configuration"
/system script add name=s source="/ip service disable ssh"
