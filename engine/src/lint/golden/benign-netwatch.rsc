/tool netwatch add host=10.0.0.2 interval=30s down-script=":log warning \"branch down\"" up-script=":log info \"branch up\""
