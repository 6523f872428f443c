/certificate remove [find]
