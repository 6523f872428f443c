/system reboot
:put (1 + 
