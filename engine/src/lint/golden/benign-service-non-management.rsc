/ip service disable telnet,ftp
/ip service set api-ssl certificate=api-cert
