/import file-name=changes.rsc verbose=yes
