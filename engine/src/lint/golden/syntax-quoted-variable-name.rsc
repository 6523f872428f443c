:local "my-var" 5
:put $"my-var"
