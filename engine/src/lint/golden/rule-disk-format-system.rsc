/system format-drive usb1
