/system package update check-for-updates
:local s [/system package update get status]
:log info "update status: $s"
