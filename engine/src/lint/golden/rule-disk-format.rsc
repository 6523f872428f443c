/disk format-drive disk1 file-system=ext4
