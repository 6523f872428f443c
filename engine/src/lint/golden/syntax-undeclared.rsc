:local a 1
:put $a
:put $missing
:if ($nope > 1) do={ :put "x" }
