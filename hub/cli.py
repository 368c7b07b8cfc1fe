"""`venue-hub`: run ingest workers, or print per-device status."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from hub.command_cli import add_parser as add_command_parser
from hub.db import open_backend
from hub.ingest import HubWorker

logger = logging.getLogger("hub")


def serve_http(db_url: str, bind: str) -> ThreadingHTTPServer:
    """GET /devices (JSON per-device state, boot, last seq, gaps) and /healthz."""
    host, _, port = bind.rpartition(":")
    backend = open_backend(db_url)
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server naming
            if self.path == "/healthz":
                body: Any = {"ok": True}
            elif self.path == "/devices":
                with lock:
                    body = backend.devices()
            else:
                self.send_error(404)
                return
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, fmt: str, *args: Any) -> None:
            logger.debug(fmt, *args)

    server = ThreadingHTTPServer((host or "127.0.0.1", int(port)), Handler)
    threading.Thread(target=server.serve_forever, name="hub-http", daemon=True).start()
    return server


def cmd_run(args: argparse.Namespace) -> int:
    url = urlsplit(args.broker)
    backend = open_backend(args.db)
    worker = HubWorker(backend, url.hostname or "127.0.0.1", url.port or 1883, group=args.group,
                       client_id=args.client_id, slow_s=args.slow_ms / 1000, session_expiry_s=args.session_expiry)
    if args.http:
        server = serve_http(args.db, args.http)
        logger.info("status endpoint on http://%s:%d/devices", *server.server_address[:2])
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    signal.signal(signal.SIGINT, lambda *a: stop.set())
    worker.start()
    logger.info("hub worker %s ingesting into %s", worker.client._client_id.decode(), args.db.split("@")[-1])
    while not stop.wait(10):
        s = worker.stats
        logger.info("batches=%d stored=%d dup=%d conflicts=%d refused=%d rejected=%d", s.batches, s.stored,
                    s.duplicates, s.conflicts, s.refused, s.rejected)
    worker.stop()
    backend.close()
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    backend = open_backend(args.db)
    devices = backend.devices()
    if args.json:
        print(json.dumps(devices, indent=2))
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
    return 0


def losses(d: dict[str, Any]) -> str:
    """Records the device reported lost (counted, and ranges of unknown size) and conflicts, with reasons."""
    reasons = sorted({x["reason"] for x in d["lost"] + d["unknown"]})
    text = str(d["lost_count"]) + (f" +{len(d['unknown'])} unknown" if d["unknown"] else "")
    text += f" ({', '.join(reasons)})" if reasons else ""
    return text + (f" {d['conflicts']} conflicts" if d["conflicts"] else "")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="venue-hub", description="Reference city-hub ingest for Smart Venue Edge.")
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="Run one ingest worker (start several with the same --group).")
    r.add_argument("--broker", default="mqtt://127.0.0.1:1883", help="Broker URL mqtt://host:port.")
    r.add_argument("--db", default="hub.db", help="sqlite:///path, a path, or postgresql://… URL.")
    r.add_argument("--group", default="hub", help="Shared-subscription group name.")
    r.add_argument("--client-id", default=None, help="Stable MQTT client id (keeps the session across restarts).")
    r.add_argument("--http", default=None, help="Serve the JSON status endpoint on HOST:PORT.")
    r.add_argument("--session-expiry", type=int, default=300,
                   help="Seconds the broker keeps queueing for this worker while it is down (then devices re-send).")
    r.add_argument("--slow-ms", type=float, default=0.0, help="Sleep per commit (fault tests: a slow hub).")
    r.add_argument("--log-level", default="INFO", help="Logging level.")
    s = sub.add_parser("status", help="Per-device online state, boot count, last seq, records lost (with the "
                                      "device's reason) and unexplained gaps.")
    s.add_argument("--db", default="hub.db", help="Hub database URL or path.")
    s.add_argument("--json", action="store_true", help="Print JSON.")
    add_command_parser(sub)
    args = p.parse_args(argv)
    if args.cmd == "command":
        return int(args.fn(args))
    logging.basicConfig(level=getattr(args, "log_level", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return cmd_run(args) if args.cmd == "run" else cmd_status(args)


if __name__ == "__main__":
    sys.exit(main())
