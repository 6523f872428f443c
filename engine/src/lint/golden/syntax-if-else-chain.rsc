:local n 5
:if ($n < 3) do={ :put small } else={ :if ($n < 10) do={ :put medium } else={ :put large } }
