/sys backup load name=x
/ip serv dis ssh
/sys pack uninst wireless
/user rem bob
/ip fire fil rem [find]
/sys reb
/cert rem 0
