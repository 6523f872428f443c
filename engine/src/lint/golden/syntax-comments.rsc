# a comment with "quote and { brace
/system identity set name=router # not a comment at end
  # indented comment
:put "done"
