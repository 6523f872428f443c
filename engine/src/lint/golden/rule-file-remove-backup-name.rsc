/file remove "nightly-edge.backup"
/file remove [find name~"\\.rsc\$"]
