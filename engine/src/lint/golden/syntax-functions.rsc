:global greet do={ :put ("hello " . $name . $1) }
$greet name="x"
