/tool fetch url="https://config.example.net/site.rsc" dst-path=site.rsc
/import file-name=site.rsc
