:local x [/system identity get name
