:put "quote \" backslash \\ nl \n cr \r tab \t dollar \$ q \? hex \41\4A"
:put "not a comment # here"
