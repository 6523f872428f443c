/system script add name=outer source=":execute script=\"/user remove guest\""
