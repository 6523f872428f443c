/system backup load name=old.backup password=x
