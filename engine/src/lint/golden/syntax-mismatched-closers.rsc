:put [:len (1 + 2])
