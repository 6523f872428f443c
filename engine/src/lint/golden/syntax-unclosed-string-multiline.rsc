:put "starts here
:put "and this line is inside the string"
