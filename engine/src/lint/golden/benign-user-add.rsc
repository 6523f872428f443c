/user add name=noc-ro group=read password="change-me-now" comment="NOC read-only"
/user group add name=ops policy=read,write,test,!sensitive
