/export file=("cfg-" . [/system identity get name])
/system backup save name=before-change
