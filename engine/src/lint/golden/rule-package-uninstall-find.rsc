/system package uninstall [find name=wireless]
