:if ([/system identity get name] = "lab") do={
  /system reset-configuration no-defaults=yes
}
