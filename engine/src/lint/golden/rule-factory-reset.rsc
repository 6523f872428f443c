/system reset-configuration no-defaults=yes
