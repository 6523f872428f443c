:local who "noc"
:put "hello $who, it is $[/system clock get time]"
