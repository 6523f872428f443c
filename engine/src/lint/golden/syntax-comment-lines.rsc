# a comment at the start
   # an indented comment
:put "# not a comment inside a string"
