/system package uninstall wireless
/system package downgrade
