:foreach l in=[/ip dhcp-server lease find where dynamic] do={
  :if ([/ip dhcp-server lease get $l host-name] = "printer") do={
    /ip dhcp-server lease make-static $l
  }
}
