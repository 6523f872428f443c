/system scheduler remove [find name~"^tmp-"]
