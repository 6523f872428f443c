/user remove [find name=admin]
