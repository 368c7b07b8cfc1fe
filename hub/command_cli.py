"""`venue-hub command`: make the command-signing key, and send signed commands and allow-lists to a device.

    venue-hub command keygen --key hub-cmd.key              # prints the public key provisioning gives devices
    venue-hub command send --key hub-cmd.key SITE DEVICE config --args '{"patch": {"log_level": "DEBUG"}}'
    venue-hub command allowlist --key hub-cmd.key --site-key-file site.key --entries list.json SITE DEVICE

`--dry-run` prints the signed payloads instead of publishing. Publishing waits for the device's result (the
device answers refusals with their reason) and exits 1 when it did not come or says ok=false. No secret is
taken from argv: keys come from files, the broker password from an environment variable.
"""

from __future__ import annotations

import argparse
import json
import os
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from hub.commands import DEFAULT_TTL_S, CounterBook, Signer, generate_key, load_key

__all__ = ["add_parser"]


def add_parser(sub: Any) -> None:
    c = sub.add_parser("command", help="Signed downlink commands: keygen, send, allowlist.")
    csub = c.add_subparsers(dest="command_cmd", required=True)
    k = csub.add_parser("keygen", help="Make the hub's Ed25519 command key (0600) and print its public key.")
    k.add_argument("--key", required=True, type=Path, help="Private key file to create (refuses to overwrite).")
    k.set_defaults(fn=cmd_keygen)
    for name, helptext in (("send", "Sign and send one command."),
                           ("allowlist", "Hash a plain allow-list with the site's key, sign and send it in parts.")):
        p = csub.add_parser(name, help=helptext)
        p.add_argument("--key", required=True, type=Path, help="The hub's command private key file.")
        p.add_argument("--counters", default="hub-commands.db", help="SQLite file of per-device counters.")
        p.add_argument("--broker", default="mqtt://127.0.0.1:1883", help="Broker URL mqtt:// or mqtts://.")
        p.add_argument("--ca", type=Path, help="CA bundle (mqtts).")
        p.add_argument("--cert", type=Path, help="Hub client certificate (mutual TLS).")
        p.add_argument("--client-key", type=Path, help="Hub client private key (mutual TLS).")
        p.add_argument("--username", help="Broker user name.")
        p.add_argument("--password-env", help="Environment variable holding the broker password.")
        p.add_argument("--ttl", type=int, default=DEFAULT_TTL_S, help="Seconds the command stays valid.")
        p.add_argument("--wait", type=float, default=15.0, help="Seconds to wait for the device's result.")
        p.add_argument("--dry-run", action="store_true", help="Print the signed payloads, publish nothing.")
        p.add_argument("site", help="Site id.")
        p.add_argument("device", help="Device id.")
        if name == "send":
            p.add_argument("name", help="Command name (ping, status, config, resync, gate.allowlist, ...).")
            p.add_argument("--args", default="{}", help="Command arguments as a JSON object.")
            p.set_defaults(fn=cmd_send)
        else:
            p.add_argument("--site-key-file", required=True, type=Path, help="The site's allow-list secret.")
            p.add_argument("--entries", required=True, type=Path,
                           help="JSON list of {id, ticket, date, slot, party}; ids are hashed here, never sent.")
            p.set_defaults(fn=cmd_allowlist)


def cmd_keygen(args: argparse.Namespace) -> int:
    print(generate_key(args.key))
    return 0


def _signer(args: argparse.Namespace) -> Signer:
    return Signer(load_key(args.key), CounterBook(args.counters))


def cmd_send(args: argparse.Namespace) -> int:
    body = json.loads(args.args)
    if not isinstance(body, dict):
        raise SystemExit("--args must be a JSON object")
    msgs = [_signer(args).command(args.site, args.device, args.name, body, ttl_s=args.ttl)]
    return publish(args, msgs)


def cmd_allowlist(args: argparse.Namespace) -> int:
    entries = json.loads(args.entries.read_text())
    site_key = args.site_key_file.read_bytes().strip()
    msgs = _signer(args).allowlist(args.site, args.device, entries, site_key, ttl_s=args.ttl)
    return publish(args, msgs)


def publish(args: argparse.Namespace, msgs: list[tuple[str, bytes]]) -> int:
    if args.dry_run:
        for topic, payload in msgs:
            print(topic, payload.decode())
        return 0
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    url = urlsplit(args.broker)
    result_topic = msgs[0][0].split("/cmd/")[0] + "/result"
    want = {json.loads(p)["id"] for _, p in msgs}
    got: dict[str, dict[str, Any]] = {}
    done, subscribed = threading.Event(), threading.Event()

    def on_message(c: Any, u: Any, m: Any) -> None:
        try:
            doc = json.loads(m.payload)
        except ValueError:
            return
        if isinstance(doc, dict) and doc.get("id") in want:
            got[doc["id"]] = doc
            if set(got) == want:
                done.set()

    c = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    if url.scheme == "mqtts":
        c.tls_set(ca_certs=str(args.ca) if args.ca else None, certfile=str(args.cert) if args.cert else None,
                  keyfile=str(args.client_key) if args.client_key else None)
    if args.username:
        c.username_pw_set(args.username, os.environ.get(args.password_env) if args.password_env else None)
    c.on_message = on_message
    c.on_subscribe = lambda *a: subscribed.set()
    c.connect(url.hostname or "127.0.0.1", url.port or (8883 if url.scheme == "mqtts" else 1883))
    c.loop_start()
    try:
        c.subscribe(result_topic, qos=1)
        subscribed.wait(10)
        for topic, payload in msgs:
            c.publish(topic, payload, qos=1).wait_for_publish(10)
        done.wait(args.wait)
    finally:
        c.loop_stop()
        c.disconnect()
    for cid in sorted(want):
        print(json.dumps(got.get(cid, {"id": cid, "ok": False, "error": "no result from the device"})))
    return 0 if set(got) == want and all(d.get("ok") for d in got.values()) else 1
