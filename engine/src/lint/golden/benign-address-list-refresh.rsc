/ip firewall address-list remove [find list=blocklist]
:foreach a in={"203.0.113.7";"198.51.100.0/24";"192.0.2.66"} do={
  /ip firewall address-list add list=blocklist address=$a timeout=1d
}
