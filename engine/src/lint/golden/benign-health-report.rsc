:local cpu [/system resource get cpu-load]
:local up [/system resource get uptime]
:local free [/system resource get free-memory]
:log info ("health cpu=" . $cpu . "% uptime=" . $up . " free=" . $free)
:if ($cpu > 90) do={ :log warning "cpu above 90%" }
