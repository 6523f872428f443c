/system device-mode set scheduler=no
