:put "hello $nobody"
