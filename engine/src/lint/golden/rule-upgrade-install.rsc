/system package update install
