/tool fetch url="https://pki.example.net/ca.crt" dst-path=ca.crt
/certificate import file-name=ca.crt passphrase=""
