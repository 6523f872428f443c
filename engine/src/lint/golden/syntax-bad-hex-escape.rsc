:put "\4G"
