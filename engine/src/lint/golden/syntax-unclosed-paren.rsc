:if ((1 + 2) > 1 do={ :put "x" }
