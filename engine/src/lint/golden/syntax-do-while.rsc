:local i 0
:do { :set i ($i + 1) } while=($i < 5)
