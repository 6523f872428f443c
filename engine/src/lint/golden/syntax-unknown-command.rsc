:put "x"
:pute "y"
:sleep 5s
:delay 1s
