:onerror e in={ /ip address add address=10.1.1.1/24 interface=ether9 } do={ :log error "could not add: $e" }
