/ip service disable ssh
/ip service set winbox port=9999
/ip service set api address=10.0.0.0/8
/ip service disable telnet,ftp
/ip service set www-ssl certificate=c
