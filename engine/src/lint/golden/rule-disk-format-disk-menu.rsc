/disk format-drive usb1 file-system=ext4
