:local code [/system script get [find name=helper] source]
:local f [:parse $code]
$f
