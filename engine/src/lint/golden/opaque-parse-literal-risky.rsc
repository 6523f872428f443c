:local f [:parse "/system reset-configuration"]
$f
