:delay 10s
/system reboot
