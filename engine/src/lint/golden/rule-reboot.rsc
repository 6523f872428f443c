/system reboot
/system shutdown
/system package update install
/system routerboard upgrade
