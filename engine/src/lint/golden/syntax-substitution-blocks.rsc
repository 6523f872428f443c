:local n [/system identity get name]
:if ([:len $n] > 0) do={
  :put ("name is " . $n)
} else={
  :put "none"
}
:local arr {1;2;3}
:local map {a=1;b="x"}
