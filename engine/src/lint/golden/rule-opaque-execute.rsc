:execute "/system reboot"
:local code "/system reset-configuration"
:execute $code
:parse ":put 1"
