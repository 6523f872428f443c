:put "never closed
/system reboot
