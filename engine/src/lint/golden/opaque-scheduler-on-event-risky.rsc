/system scheduler add name=late-reboot start-time=03:00:00 on-event="/system reboot"
