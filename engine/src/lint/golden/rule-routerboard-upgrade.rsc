/system routerboard upgrade
