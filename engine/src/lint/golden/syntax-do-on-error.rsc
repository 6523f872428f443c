:do { /interface enable ether9 } on-error={ :log warning "no ether9" }
