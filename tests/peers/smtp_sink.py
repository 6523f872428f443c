"""An SMTP server for the notification tests: aiosmtpd, a real implementation of the
protocol, with AUTH PLAIN and LOGIN against one user, and STARTTLS when given a
certificate. Every message received is parsed with Python's own email package and
written as one JSON line to the output file, so the test reads what a mail client
would see.

    python3 smtp_sink.py HOST OUT_FILE [--user U --password P] [--cert C --key K] [--require-tls]

Prints `listening on HOST:PORT` once it accepts connections, and runs until killed.
"""

import argparse
import email
import email.policy
import json
import socket
import ssl
import sys
import time

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


class Sink:
    def __init__(self, out):
        self.out = out

    async def handle_DATA(self, server, session, envelope):
        raw = envelope.original_content or envelope.content
        message = email.message_from_bytes(raw, policy=email.policy.default)
        parts = []
        for part in message.walk():
            if part.is_multipart():
                continue
            parts.append(
                {
                    "content_type": part.get_content_type(),
                    "charset": part.get_content_charset(),
                    "transfer_encoding": part.get("Content-Transfer-Encoding"),
                    "text": part.get_content(),
                }
            )
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "auth_user": session.auth_data.login.decode() if isinstance(session.auth_data, LoginPassword) else None,
            "tls": session.ssl is not None,
            "headers": {k: str(v) for k, v in message.items()},
            "content_type": message.get_content_type(),
            "parts": parts,
            "raw": raw.decode("utf-8", "replace"),
        }
        with open(self.out, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        return "250 Message accepted for delivery"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("host")
    parser.add_argument("out")
    parser.add_argument("--user")
    parser.add_argument("--password")
    parser.add_argument("--cert")
    parser.add_argument("--key")
    parser.add_argument("--require-tls", action="store_true")
    args = parser.parse_args()

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login.decode() == args.user
            and auth_data.password.decode() == args.password
        )
        return AuthResult(success=ok, handled=False, auth_data=auth_data)

    kwargs = {}
    if args.user:
        kwargs.update(authenticator=authenticator, auth_require_tls=args.require_tls)
    if args.cert:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.cert, args.key)
        kwargs.update(tls_context=context, require_starttls=args.require_tls)
    # aiosmtpd connects to its own port to check it is up, so it needs a real one.
    with socket.socket() as probe:
        probe.bind((args.host, 0))
        port = probe.getsockname()[1]
    controller = Controller(Sink(args.out), hostname=args.host, port=port, **kwargs)
    controller.start()
    print(f"listening on {args.host}:{port}", flush=True)
    try:
        while True:
            time.sleep(3600)
    finally:
        controller.stop()


if __name__ == "__main__":
    sys.exit(main())
