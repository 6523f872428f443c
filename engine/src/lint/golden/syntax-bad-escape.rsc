:put "bad \q escape"
