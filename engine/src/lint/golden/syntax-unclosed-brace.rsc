:if (true) do={
  :put "x"
