/user set noc group=read
/user group set ops policy=read
/user group remove full-ops
