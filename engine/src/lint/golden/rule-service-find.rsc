/ip service disable [find name=api]
/ip service set [find name=winbox] address=10.0.0.0/24
