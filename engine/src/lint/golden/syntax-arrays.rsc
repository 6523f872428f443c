:local list {1;2;3}
:local empty [:toarray ""]
:local nested {{1;2};{3;4}}
:put [:len $list]
:put ($nested->1->0)
