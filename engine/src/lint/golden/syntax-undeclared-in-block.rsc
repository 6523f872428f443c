:if (true) do={ :put $ghost }
