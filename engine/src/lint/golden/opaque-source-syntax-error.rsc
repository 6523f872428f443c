/system script add name=broken source=":if (1 = 1) do={ :put yes"
