/ip service set ssh disabled=yes
/ip service set telnet disabled=yes
