/certificate remove [find name=old]
