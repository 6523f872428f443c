/user disable noc
/user set ops disabled=yes
