/tool fetch url="https://example.net/motd.txt" dst-path=motd.txt
