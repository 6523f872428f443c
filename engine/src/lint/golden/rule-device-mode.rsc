/system device-mode update container=yes
