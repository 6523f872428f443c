/interface ethernet set [find where !running and comment=""] disabled=yes
