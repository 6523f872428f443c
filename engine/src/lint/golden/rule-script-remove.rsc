/system script remove [find name=cleanup]
