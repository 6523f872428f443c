/ip service disable numbers=api,ftp
