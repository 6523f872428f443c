/tool fetch url="http://10.0.0.1/x.rsc"
/import file-name=x.rsc
