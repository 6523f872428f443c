/queue simple add name=guest target=192.168.90.0/24 max-limit=20M/20M
/queue simple set [find name=guest] limit-at=5M/5M
