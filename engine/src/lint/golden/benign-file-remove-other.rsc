/file remove [find name="old-log.txt"]
/file remove flash/tmp.txt
