:local x ((1 + 2) * 3)
:local y ($x / 2 - 1)
:local ok (($x > 5) && ($y != 0) || !false)
:put ($x . " " . $y . " " . $ok)
