/tool mac-server mac-winbox set allowed-interface-list=none
/tool mac-server set allowed-interface-list=LAN
