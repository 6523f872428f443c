/file remove "flash/old.backup"
/file remove config.rsc
/file remove log.txt
/system script remove cleanup
/system scheduler remove [find name=nightly]
