:local cmd ("/ip address print")
:execute script=$cmd
