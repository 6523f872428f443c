/sys reset-conf
/system/reset-configuration keep-users=yes
