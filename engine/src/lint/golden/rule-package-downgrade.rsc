/system package downgrade
