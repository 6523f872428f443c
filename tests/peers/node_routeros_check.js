#!/usr/bin/env node
// Drives a running `yardmaster simulate` with npm's node-routeros client.
//
// Usage: node_routeros_check.js [--v7] HOST PORT USER PASSWORD [TLS_PORT FINGERPRINT]
//        node_routeros_check.js --legacy HOST PORT USER PASSWORD
//
// node-routeros 1.6.9 predates the `!empty` reply RouterOS 7.18 sends for a print
// that matches nothing, and throws from its socket handler on it, which ends the
// process. Against a 7.18 fleet (`--v7`) this script therefore never prints an empty
// list; the empty prints are observed on a 6.45 fleet instead, and `/execute` with
// `as-string` (7.x only) on the 7.18 one.
//
// Prints one JSON object with what the client saw, then exits 0; any error exits
// non-zero with its stack, so the Rust test reports it. Assertions are made by the
// caller on the JSON, so this script only observes.
'use strict';

const { RouterOSAPI } = require('node-routeros');

async function connect(options) {
    const conn = new RouterOSAPI({ timeout: 10, ...options });
    await conn.connect();
    return conn;
}

async function trapMessage(promise) {
    try {
        await promise;
        return null;
    } catch (e) {
        return e.message;
    }
}

async function observe(conn, v7) {
    const out = {};
    out.identity = await conn.write('/system/identity/print');
    out.resource = await conn.write('/system/resource/print', ['=.proplist=version,board-name']);
    out.interfaces = (await conn.write('/interface/print')).map((r) => r.name);
    const added = await conn.write('/ip/address/add', [
        '=address=10.9.0.1/24',
        '=interface=ether2',
        '=comment=from node-routeros',
    ]);
    out.added_id = added[0].ret;
    out.queried = await conn.write('/ip/address/print', [
        '=.proplist=.id,address,network',
        '?interface=ether2',
    ]);
    if (!v7) {
        out.not_found = await conn.write('/ip/address/print', ['?interface=ether4']);
    }
    await conn.write('/ip/address/set', ['=.id=' + out.added_id, '=comment=changed']);
    out.comment_after_set = (await conn.write('/ip/address/print', ['?.id=' + out.added_id])).map(
        (r) => r.comment,
    );
    const script = '=script=:log info "from node-routeros"; :put "hello"';
    if (v7) {
        const executed = await conn.write('/execute', [script, '=as-string=']);
        out.execute_output = executed.length ? executed[0].ret : null;
    } else {
        // Before 7.x, /execute has no as-string: it starts a job and answers its id.
        await conn.write('/execute', [script]);
    }
    out.log = (await conn.write('/log/print')).map((r) => r.message);
    out.trap = await trapMessage(
        conn.write('/ip/address/add', ['=address=10.9.0.2/24', '=interface=nope']),
    );
    await conn.write('/ip/address/remove', ['=.id=' + out.added_id]);
    if (!v7) {
        out.after_remove = (await conn.write('/ip/address/print')).map((r) => r.address);
    }
    return out;
}

async function main(args, v7) {
    const [host, port, user, password, tlsPort, fingerprint] = args;
    const result = {};
    let conn = await connect({ host, port: Number(port), user, password });
    result.plain = await observe(conn, v7);
    await conn.close();

    result.bad_password = await trapMessage(
        connect({ host, port: Number(port), user, password: password + 'x' }),
    );

    if (tlsPort) {
        // The simulator's certificate is self-signed: pin its fingerprint instead.
        conn = await connect({
            host,
            port: Number(tlsPort),
            user,
            password,
            tls: { rejectUnauthorized: false },
        });
        const seen = conn.connector.socket.getPeerCertificate().fingerprint256;
        result.tls = {
            fingerprint_matches: seen.replace(/:/g, '').toLowerCase() === fingerprint,
            identity: await conn.write('/system/identity/print'),
        };
        await conn.close();
    }
    return result;
}

// Challenge login against a 6.42 fleet, which node-routeros falls back to on its own.
async function legacy(args) {
    const [host, port, user, password] = args;
    const conn = await connect({ host, port: Number(port), user, password });
    const out = { identity: await conn.write('/system/identity/print') };
    out.addresses_empty = await conn.write('/ip/address/print');
    await conn.close();
    return out;
}

const args = process.argv.slice(2);
let run;
if (args[0] === '--legacy') {
    run = legacy(args.slice(1));
} else if (args[0] === '--v7') {
    run = main(args.slice(1), true);
} else {
    run = main(args, false);
}
run.then(
    (out) => {
        process.stdout.write(JSON.stringify(out) + '\n');
        process.exit(0);
    },
    (e) => {
        process.stderr.write((e && e.stack) || String(e));
        process.stderr.write('\n');
        process.exit(1);
    },
);
