:local a 1
:global b "two"
:put $a
:put $b
:local "with-dash" 3
:put $"with-dash"
