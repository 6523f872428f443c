:put "\41\42\43"
:put "tab\there"
:put "quote \" and backslash \\"
:put "dollar \$ and question \?"
