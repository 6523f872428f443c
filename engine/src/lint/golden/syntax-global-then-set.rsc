:global limit
:set limit 10
:put $limit
