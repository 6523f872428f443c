:put [/system identity get name]]
