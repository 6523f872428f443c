:put "a" }
:put [:len "b"]]
:put (1))
