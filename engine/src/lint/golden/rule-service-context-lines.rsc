/ip service
set www port=8080
set api-ssl address=192.168.0.0/16
