:local greet do={ :return ("hello " . $1) }
:put [$greet "world"]
