/sys backup lo name=before-change.backup
