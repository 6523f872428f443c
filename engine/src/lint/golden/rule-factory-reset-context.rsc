/system
reset-configuration keep-users=yes
