#!/usr/bin/env python3
"""Drives a running `yardmaster simulate` with the PyPI librouteros client.

Usage: librouteros_check.py HOST PORT USER PASSWORD [TLS_PORT FINGERPRINT]

Prints one JSON object with what the client saw, then exits 0; any exception
exits non-zero with its traceback, so the Rust test reports it. Assertions are
made by the caller on the JSON, so this script only observes.
"""

import hashlib
import json
import socket
import ssl
import sys

import librouteros
from librouteros.login import plain, token
from librouteros.query import Key


def observe(api):
    out = {}
    out["identity"] = [dict(r) for r in api.path("/system/identity")]
    resource = list(api.path("/system/resource").select(Key("version"), Key("board-name")))
    out["resource"] = [dict(r) for r in resource]
    out["interfaces"] = [r["name"] for r in api.path("/interface")]
    addresses = api.path("/ip/address")
    out["added_id"] = addresses.add(address="10.9.0.1/24", interface="ether2", comment="from librouteros")
    out["queried"] = [
        dict(r)
        for r in addresses.select(Key(".id"), Key("address"), Key("network")).where(Key("interface") == "ether2")
    ]
    out["not_found"] = list(addresses.select(Key("address")).where(Key("interface") == "ether4"))
    addresses.update(**{".id": out["added_id"], "comment": "changed"})
    out["comment_after_set"] = [r.get("comment") for r in addresses if r[".id"] == out["added_id"]]
    executed = list(api("/execute", script=':log info "from librouteros"; :put "hello"', **{"as-string": ""}))
    out["execute_output"] = executed[0].get("ret") if executed else None
    log = [r["message"] for r in api.path("/log")]
    out["log"] = log
    try:
        list(api("/ip/address/add", address="10.9.0.2/24", interface="nope"))
        out["trap"] = None
    except librouteros.exceptions.TrapError as e:
        out["trap"] = str(e)
    addresses.remove(out["added_id"])
    out["after_remove"] = [r["address"] for r in addresses]
    return out


def main():
    host, port, user, password = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    result = {}
    api = librouteros.connect(host=host, port=port, username=user, password=password, login_method=plain, timeout=10)
    result["plain"] = observe(api)
    api.close()

    try:
        librouteros.connect(host=host, port=port, username=user, password=password + "x", login_method=plain, timeout=10)
        result["bad_password"] = None
    except librouteros.exceptions.TrapError as e:
        result["bad_password"] = str(e)

    if len(sys.argv) > 6:
        tls_port, fingerprint = int(sys.argv[5]), sys.argv[6]
        ctx = ssl.create_default_context()
        # The simulator's certificate is self-signed: pin its fingerprint instead.
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        seen = {}

        def wrap(sock: socket.socket):
            wrapped = ctx.wrap_socket(sock, server_hostname=host)
            seen["fingerprint"] = hashlib.sha256(wrapped.getpeercert(binary_form=True)).hexdigest()
            return wrapped

        api = librouteros.connect(
            host=host, port=tls_port, username=user, password=password, ssl_wrapper=wrap, login_method=plain, timeout=10
        )
        result["tls"] = {
            "fingerprint_matches": seen.get("fingerprint") == fingerprint,
            "identity": [dict(r) for r in api.path("/system/identity")],
        }
        api.close()
    print(json.dumps(result))


def legacy():
    """Challenge login against a 6.42 fleet: librouteros's `token` method."""
    host, port, user, password = sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
    api = librouteros.connect(host=host, port=port, username=user, password=password, login_method=token, timeout=10)
    out = {"identity": [dict(r) for r in api.path("/system/identity")]}
    out["addresses_empty"] = list(api.path("/ip/address"))
    api.close()
    print(json.dumps(out))


if __name__ == "__main__":
    if sys.argv[1] == "--legacy":
        legacy()
    else:
        main()
