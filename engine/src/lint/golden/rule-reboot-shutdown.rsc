/system shutdown
