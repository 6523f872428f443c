/system identity set name = router
= 5
