/ip service disable [find]
