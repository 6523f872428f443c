:foreach a in=[/ip address print as-value] do={ :put ($a->"address") }
