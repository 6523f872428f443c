/system logging action set [find name=disk] disk-file-count=4 disk-lines-per-file=5000
/system logging add topics=critical action=disk
