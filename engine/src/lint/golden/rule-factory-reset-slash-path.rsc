/system/reset-configuration no-defaults=yes skip-backup=yes
