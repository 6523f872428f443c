:global runs
:if ([:typeof $runs] = "nothing") do={ :set runs 0 }
:set runs ($runs + 1)
:log info "run number $runs"
