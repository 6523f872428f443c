/tool netwatch add host=10.0.0.1 down-script="/system reboot"
