/ip dns set servers=1.1.1.1,9.9.9.9 allow-remote-requests=no
/ip dns static add name=nas.lan address=192.168.88.10
