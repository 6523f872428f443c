:global add do={ :return ($a + $b) }
:put [$add a=2 b=3]
