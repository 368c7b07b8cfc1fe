"""`venue-hub`: run ingest workers, or print per-device status.

Secrets never travel in argv (`ps` shows it): the broker password comes from `--password-file` or
$VENUE_HUB_MQTT_PASSWORD, the database password from `--db-password-file`, $VENUE_HUB_DB_PASSWORD or
PGPASSWORD, the HTTP token from `--http-token-file` or $VENUE_HUB_HTTP_TOKEN. A URL carrying a password
is refused.
"""

from __future__ import annotations

import argparse
import hmac
import ipaddress
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from hub.command_cli import add_parser as add_command_parser
from hub.db import open_backend
from hub.ingest import HubStats, HubWorker
from hub.link import broker_link, db_url, read_secret, redact
from hub.screen import Limits

logger = logging.getLogger("hub")
HTTP_TOKEN_ENV = "VENUE_HUB_HTTP_TOKEN"  # nosec B105: the name of the variable, not a token


def is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def metrics(devices: list[dict[str, Any]], stats: HubStats | None) -> str:
    """Prometheus text: alarms (conflicts), refusals per reason, and the worker's counters."""
    lines = ["# TYPE venue_hub_conflicts gauge"]
    lines += [f'venue_hub_conflicts{{device="{d["device"]}"}} {d["conflicts"]}' for d in devices]
    lines.append("# TYPE venue_hub_rejected gauge")
    lines += [f'venue_hub_rejected{{device="{d["device"]}",reason="{r}"}} {n}'
              for d in devices for r, n in sorted(d.get("rejected", {}).items())]
    lines.append(f"venue_hub_conflict_alarm {int(any(d['conflicts'] for d in devices))}")
    if stats is not None:
        for name in ("batches", "stored", "duplicates", "conflicts", "refused", "rejected", "commits"):
            lines.append(f"venue_hub_worker_{name}_total {getattr(stats, name)}")
    return "\n".join(lines) + "\n"


def serve_http(db: str, bind: str, token: str | None = None, stats: HubStats | None = None) -> ThreadingHTTPServer:
    """GET /devices (JSON per device), /rejections, /metrics and /healthz; a bearer token when one is set.
    Refuses to listen beyond loopback without a token."""
    host, _, port = bind.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    if not is_loopback(host) and not token:
        raise ValueError(f"the status endpoint would listen on {host} without a token: set --http-token-file "
                         f"or ${HTTP_TOKEN_ENV}, or bind 127.0.0.1")
    backend = open_backend(db)
    lock = threading.Lock()
    want = f"Bearer {token}".encode() if token else None
    routes: dict[str, Callable[[], tuple[str, bytes]]] = {
        "/devices": lambda: ("application/json", json.dumps(backend.devices()).encode()),
        "/rejections": lambda: ("application/json", json.dumps(backend.rejections()).encode()),
        "/metrics": lambda: ("text/plain; version=0.0.4", metrics(backend.devices(), stats).encode()),
    }

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server naming
            if self.path == "/healthz":
                self._send("application/json", b'{"ok": true}')
                return
            if want is not None and not hmac.compare_digest(self.headers.get("Authorization", "").encode(), want):
                self.send_error(401)
                return
            route = routes.get(self.path)
            if route is None:
                self.send_error(404)
                return
            with lock:
                ctype, data = route()
            self._send(ctype, data)

        def _send(self, ctype: str, data: bytes) -> None:
            self.send_response(200)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, fmt: str, *args: Any) -> None:
            logger.debug(fmt, *args)

    server = ThreadingHTTPServer((host, int(port)), Handler)
    threading.Thread(target=server.serve_forever, name="hub-http", daemon=True).start()
    return server


def cmd_run(args: argparse.Namespace) -> int:
    link = broker_link(args.broker, args.ca, args.cert, args.key, args.username, args.password_file)
    db = db_url(args.db, args.db_password_file)
    backend = open_backend(db)
    admit = None
    if args.admit == "registered":
        from hub.registry import Registry

        admit = Registry(db).admit
    else:
        logger.warning("--admit any: records from devices nobody registered are stored (development only)")
    worker = HubWorker(backend, group=args.group, client_id=args.client_id, slow_s=args.slow_ms / 1000,
                       session_expiry_s=args.session_expiry, link=link, admit=admit,
                       limits=Limits(max_message=args.max_message_kb * 1024, max_body=args.max_body_kb * 1024))
    if args.http:
        token = read_secret(args.http_token_file, HTTP_TOKEN_ENV)
        server = serve_http(db, args.http, token, worker.stats)
        logger.info("status endpoint on http://%s:%d/devices", *server.server_address[:2])
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    signal.signal(signal.SIGINT, lambda *a: stop.set())
    worker.start()
    logger.info("hub worker %s ingesting into %s via %r", worker.client._client_id.decode(), redact(db), link)
    while not stop.wait(10):
        s = worker.stats
        logger.info("batches=%d stored=%d dup=%d conflicts=%d refused=%d rejected=%d %s", s.batches, s.stored,
                    s.duplicates, s.conflicts, s.refused, s.rejected, dict(s.reasons) or "")
    worker.stop()
    backend.close()
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    backend = open_backend(db_url(args.db, args.db_password_file))
    devices = backend.devices()
    rejections = backend.rejections()
    if args.json:
        print(json.dumps({"devices": devices, "rejections": rejections} if args.with_rejections else devices,
                         indent=2))
        return 0
    print(f"{'device':<20} {'site':<14} {'online':<7} {'boot':>5} {'events':>9} {'last_seq':>18}  "
          f"{'lost':<28} gaps")
    for d in devices:
        gaps = ", ".join(f"{a}-{b}" if a != b else str(a) for a, b in d["gaps"][:5]) or "-"
        if len(d["gaps"]) > 5:
            gaps += f" (+{len(d['gaps']) - 5})"
        print(f"{d['device']:<20} {d['site'] or '':<14} {'yes' if d['online'] else 'no':<7} "
              f"{d['boot'] if d['boot'] is not None else '-':>5} {d['events']:>9} {d['last_seq'] or '-':>18}  "
              f"{losses(d):<28} {gaps}")
    for d in devices:
        if d["conflicts"]:
            print(f"ALARM {d['device']}: {d['conflicts']} records differ from those held under the same seq "
                  "(kept apart in `conflicts`; check the device and its identity)")
    if rejections:
        print("\nrefused messages (device, site, reason, count, last detail):")
        for r in rejections:
            print(f"  {r['device']:<20} {r['site']:<14} {r['reason']:<16} {r['count']:>8}  {r['detail'] or ''}"[:160])
    return 0


def losses(d: dict[str, Any]) -> str:
    """Records the device reported lost (counted, and ranges of unknown size) and conflicts, with reasons."""
    reasons = sorted({x["reason"] for x in d["lost"] + d["unknown"]})
    text = str(d["lost_count"]) + (f" +{len(d['unknown'])} unknown" if d["unknown"] else "")
    text += f" ({', '.join(reasons)})" if reasons else ""
    return text + (f" {d['conflicts']} conflicts" if d["conflicts"] else "")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="venue-hub", description="Reference city-hub ingest for Smart Venue Edge.")
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="Run one ingest worker (start several with the same --group).")
    r.add_argument("--broker", default="mqtt://127.0.0.1:1883",
                   help="Broker URL mqtt://host:port, or mqtts://host:port for TLS (no credentials in it).")
    r.add_argument("--ca", default=None, help="CA bundle the broker's certificate must chain to (mqtts).")
    r.add_argument("--cert", default=None, help="The hub's client certificate chain (the `_hub` identity).")
    r.add_argument("--key", default=None, help="The hub's private key (with --cert).")
    r.add_argument("--username", default=None, help="Broker user name (password: --password-file or "
                                                     "$VENUE_HUB_MQTT_PASSWORD).")
    r.add_argument("--password-file", default=None, help="File whose first line is the broker password.")
    _db_args(r)
    r.add_argument("--admit", choices=("registered", "any"), default="registered",
                   help="Store records only from devices registered and active at their site (default), or "
                        "from any device (development with an open broker).")
    r.add_argument("--group", default="hub", help="Shared-subscription group name.")
    r.add_argument("--client-id", default=None, help="Stable MQTT client id (keeps the session across restarts).")
    r.add_argument("--http", default=None, help="Serve the status endpoint on HOST:PORT (loopback unless a "
                                                "token is set).")
    r.add_argument("--http-token-file", default=None, help="File with the bearer token the status endpoint asks "
                                                           "for (or $VENUE_HUB_HTTP_TOKEN).")
    r.add_argument("--max-message-kb", type=int, default=4096, help="Largest message accepted, before decoding.")
    r.add_argument("--max-body-kb", type=int, default=64, help="Largest record body (JSON text) accepted.")
    r.add_argument("--session-expiry", type=int, default=300,
                   help="Seconds the broker keeps queueing for this worker while it is down (then devices re-send).")
    r.add_argument("--slow-ms", type=float, default=0.0, help="Sleep per commit (fault tests: a slow hub).")
    r.add_argument("--log-level", default="INFO", help="Logging level.")
    s = sub.add_parser("status", help="Per-device online state, boot count, last seq, records lost (with the "
                                      "device's reason), unexplained gaps, conflict alarms and refused messages.")
    _db_args(s)
    s.add_argument("--json", action="store_true", help="Print JSON (the device list).")
    s.add_argument("--with-rejections", action="store_true", help="With --json: {devices, rejections}.")
    add_command_parser(sub)
    return p


def _db_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db", default=os.environ.get("VENUE_HUB_DB", "hub.db"),
                   help="sqlite:///path, a path, or postgresql://… URL without a password ($VENUE_HUB_DB).")
    p.add_argument("--db-password-file", default=None, help="File whose first line is the database password "
                                                            "(or $VENUE_HUB_DB_PASSWORD, PGPASSWORD).")


def main(argv: list[str] | None = None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    if args.cmd == "command":
        return int(args.fn(args))
    logging.basicConfig(level=getattr(args, "log_level", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return cmd_run(args) if args.cmd == "run" else cmd_status(args)
    except ValueError as err:
        print(f"venue-hub: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
