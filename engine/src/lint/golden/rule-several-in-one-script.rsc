/ip service disable winbox
/user remove oldadmin
/system reboot
