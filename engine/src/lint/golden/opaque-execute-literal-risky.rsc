:execute script="/ip service disable ssh"
