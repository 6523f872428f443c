:if (true) do={
  :foreach i in={1;2} do={
    :put $i
}
