:frobnicate 1
:putt "typo"
