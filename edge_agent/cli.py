"""`edge-agent` command line."""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import signal
import sys
import threading
from importlib import resources
from pathlib import Path
from typing import Any

from edge_agent.config.loader import ConfigError
from edge_agent.registry import load_config
from edge_agent.runtime import logs

logger = logging.getLogger("edge_agent")


def cmd_run(args: argparse.Namespace) -> int:
    from edge_agent.app import Agent, load_or_exit, overlay_path
    from edge_agent.runtime import revert

    logs.setup("INFO")
    local = load_or_exit_local(Path(args.config))
    try:
        revert.before_start(overlay_path(Path(args.config)), local.commands.revert_after_failed_starts)
    except OSError as err:  # a read-only config directory holds no overlay either: nothing to count or revert
        logger.warning("cannot count this start for the remote-config revert: %s", err)
    cfg = load_or_exit(Path(args.config))
    logs.setup(cfg.log_level)
    agent = Agent(cfg, Path(args.config))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    signal.signal(signal.SIGINT, lambda *a: stop.set())
    agent.start()
    try:
        return agent.run(duration=args.duration, stop=stop)
    finally:
        agent.stop()


def load_or_exit_local(path: Path) -> Any:
    """The technician's file alone (no remote overlay)."""
    try:
        return load_config(path)
    except ConfigError as err:
        for issue in err.issues:
            logger.error("%s: %s", err.source, issue)
        raise SystemExit(2) from None


def demo_config_path() -> Path:
    return Path(str(resources.files("edge_agent") / "examples" / "gate-demo.toml"))


def cmd_demo(args: argparse.Namespace) -> int:
    from edge_agent.app import Agent
    from edge_agent.registry import AgentConfig

    base = load_config(demo_config_path())
    data = base.model_dump(mode="json")
    data["store"]["path"] = str(Path(args.store))
    if args.broker:
        data["mqtt"]["url"] = args.broker
    video = Path(args.video)
    if importlib.util.find_spec("onnxruntime") and importlib.util.find_spec("cv2") and video.exists():
        # The shipped model counting people on the sample video, replayed: a gate camera.
        data["producers"].append({"type": "vision", "name": "north-cam", "source": str(video), "loop": True,
                                  "interval_s": 10, "lines": [{"name": "entrance", "points": [240, 0, 240, 360]}]})
    else:
        print("(vision extra or sample video not available: camera counting left out of the demo)")
    cfg = AgentConfig.model_validate(data)
    logs.setup("WARNING" if not args.verbose else "INFO")
    agent = Agent(cfg)
    print(f"edge-agent demo: scenic-spot gate '{cfg.device.id}' at '{cfg.device.site}', outbox {cfg.store.path}, "
          f"broker {cfg.mqtt.url}, for {args.duration:.0f} s")
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *a: stop.set())

    def tick(st: dict[str, Any]) -> None:
        c = st["classes"]
        line = (f"queue {st['queue']:>6} (tx {c['transaction']['depth']}, meas {c['measurement']['depth']}, "
                f"state {c['state']['depth']})  sent {st['sent']:>6}  acked {st['acked']:>6}  broker {st['broker']}")
        if st["broker"] in ("disconnected", "refused"):
            line += "  — no broker: buffering locally"
        print(line, flush=True)

    hub = None
    if not args.no_hub:
        # A reference hub in the same process, so a machine with a broker shows the whole loop.
        from hub.db import SqliteBackend
        from hub.ingest import HubWorker

        Path(args.store).parent.mkdir(parents=True, exist_ok=True)
        hub = HubWorker(SqliteBackend(str(Path(args.store).with_name("demo-hub.db"))), cfg.mqtt.host,
                        cfg.mqtt.port, group="demo-hub", client_id=f"demo-hub-{cfg.device.id}", session_expiry_s=0)
        hub.start()
    agent.start()
    try:
        rc = agent.run(duration=args.duration, tick=tick, stop=stop)
    finally:
        final, failures = agent.status(), agent.failures()
        agent.stop()
        if hub is not None:
            hub.stop()
            print(f"hub: {hub.backend.count()} events stored in {Path(args.store).with_name('demo-hub.db')}")
            hub.backend.close()
    for line in failures:
        print(f"edge-agent demo FAILED: {line}", file=sys.stderr)
    if rc:
        return rc
    print(f"done: {final['queue']} records buffered on the device, {final['acked']} acknowledged by the hub")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    try:
        cfg = load_config(args.file)
    except ConfigError as err:
        for issue in err.issues:
            print(f"{err.source}: {issue}", file=sys.stderr)
        print(f"{len(err.issues)} problem(s) found", file=sys.stderr)
        return 2
    print(f"{args.file}: OK — device {cfg.device.id} at {cfg.device.site}, {len(cfg.producers)} producer(s), "
          f"broker {cfg.mqtt.url}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from edge_agent.app import load_or_exit
    from edge_agent.doctor import read_status

    cfg = load_or_exit(Path(args.config))
    try:
        st = read_status(Path(cfg.store.path))
    except FileNotFoundError as err:
        print(err, file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(st, indent=2))
        return 0
    rt = st["runtime"]
    print(f"outbox {st['db']}: {st['queue']} queued")
    for cls, c in st["classes"].items():
        print(f"  {cls:<12} depth {c['depth']:>8}  oldest unsent {c['oldest_age_s']:>8.1f} s")
    print(f"drops: {st['drops'] or 'none'}")
    print(f"acked: {st['acked'] or 'none'}")
    if st["relayed_duplicates"]:
        print(f"re-sent device records recognised: {st['relayed_duplicates']}")
    print(f"agent: {st['agent']}" + (f" (pid {rt.get('pid')}, last report {st['runtime_age_s']} s ago)" if rt else ""))
    if rt:
        print(f"broker: {rt.get('broker')} ({rt.get('broker_url')})  inflight {rt.get('inflight')}  "
              f"boot {rt.get('boot')}  reported {st['runtime_age_s']} s ago"
              + ("" if st["agent"] == "running" else "  (last known: the agent is not reporting)"))
    else:
        print("broker: unknown (agent has not reported yet)")
    if st["quarantined"]:
        print(f"quarantined databases (kept for upload): {', '.join(st['quarantined'])}")
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from edge_agent.app import load_or_exit
    from edge_agent.doctor import run_doctor

    rows = run_doctor(load_or_exit(Path(args.config)))
    for check, verdict, detail in rows:
        print(f"{verdict:<5} {check:<17} {detail}")
    return 1 if any(v == "FAIL" for _, v, _ in rows) else 0


def cmd_sim(args: argparse.Namespace) -> int:
    if "kiosk" in (args.devices or []):
        from edge_agent.kiosk.simcli import run as kiosk_sim

        return kiosk_sim(args.seconds)
    from edge_agent.sim import cli as sim

    return sim.run(args.devices or list(sim.KINDS), args.seconds)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="edge-agent", description="Smart Venue Edge device agent.")
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="Run the agent with a config file (TOML or YAML).")
    r.add_argument("--config", required=True, help="Path to the agent config.")
    r.add_argument("--duration", type=float, default=None, help="Stop after this many seconds (default: run forever).")
    r.set_defaults(fn=cmd_run)
    d = sub.add_parser("demo", help="Run a scenic-spot gate on the shipped example config and show what it does.")
    d.add_argument("--duration", type=float, default=20.0, help="Seconds to run.")
    d.add_argument("--store", default="var/demo-outbox.db", help="Outbox file for the demo.")
    d.add_argument("--broker", default=None, help="Broker URL (default from the example: mqtt://127.0.0.1:1883).")
    d.add_argument("--video", default="tests/fixtures/pets09_s2l1_view1_480x360.avi",
                   help="Sample video for the camera producer.")
    d.add_argument("--no-hub", action="store_true", help="Do not run the in-process reference hub.")
    d.add_argument("--verbose", action="store_true", help="Show agent logs.")
    d.set_defaults(fn=cmd_demo)
    v = sub.add_parser("validate-config", help="Check a config file; errors name key path, line and value.")
    v.add_argument("file", help="Config file to check.")
    v.set_defaults(fn=cmd_validate)
    s = sub.add_parser("status", help="Queue depth per class, oldest unsent age, drops, broker state.")
    s.add_argument("--config", required=True, help="Path to the agent config.")
    s.add_argument("--json", action="store_true", help="Print JSON.")
    s.set_defaults(fn=cmd_status)
    dr = sub.add_parser("doctor", help="Disk free, fsync latency, clock sanity, outbox integrity, broker reachability.")
    dr.add_argument("--config", required=True, help="Path to the agent config.")
    dr.set_defaults(fn=cmd_doctor)
    sm = sub.add_parser("sim", help="Start device simulators on pty pairs (turnstile, scanner, ID reader, display, "
                        "Modbus bus) for demos; commands on stdin (scan, card, set, walk, show, quit).")
    sm.add_argument("devices", nargs="*",
                    choices=["turnstile", "scanner", "idreader", "display", "modbus", "kiosk", []],
                    help="Which simulators (default: all but kiosk; 'kiosk' alone starts a hotel kiosk's devices).")
    sm.add_argument("--seconds", type=float, default=None, help="Stop after this many seconds (default: until quit).")
    sm.set_defaults(fn=cmd_sim)
    from edge_agent.kiosk.cli import add_parser as add_kiosk
    from edge_agent.vision.cli import add_parser as add_vision

    add_vision(sub)
    add_kiosk(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Everything the agent creates (outbox + WAL/SHM, state dirs, allow-list, logs, vault, overlays) is 0600/0700:
    # ID hashes, guest records and queued transactions are nobody else's business on a shared box.
    os.umask(0o077)
    if args.cmd != "run":
        logs.setup("WARNING")
    return int(args.fn(args))


if __name__ == "__main__":
    sys.exit(main())
