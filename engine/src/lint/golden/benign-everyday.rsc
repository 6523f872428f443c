:local dest "10.0.0.0/8"
/ip firewall address-list add list=mgmt address=$dest
:do {
  /system identity set name="x"
} on-error={ :log warning "failed" }
:while (false) do={ :put "never" }
:put [:pick "abcdef" 1 3]
:local t [:totime "1h"]
:put [:typeof $t]
/interface ethernet set [find default-name=ether1] comment="uplink"
