"""`edge-agent sim`: start device simulators on pty pairs for demos and bench work.

Prints each device's serial path and a config snippet that uses them, then takes commands on stdin:

    scan <code>                 the QR scanner reads <code>
    card <18-digit id>          an ID card is placed on the reader
    set <dev> <fn> <reg> <val>  a Modbus register changes (e.g. set 2 3 6 400: NH3 4 ppm)
    walk on|off                 people walk through the turnstile after it opens (or not)
    show                        what the display shows, turnstile openings so far
    quit
Turnstile openings and display changes are printed as they happen.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TextIO

KINDS = ("turnstile", "scanner", "idreader", "display", "modbus")

# A demo toilet bus: T/RH, NH3, H2S, an 8-input module (stalls 1-2, leak, paper) and a visitor counter.
MODBUS_DEMO = [(1, 4, 1, 235), (1, 4, 2, 550), (2, 3, 6, 30), (3, 3, 6, 0), (20, 3, 0, 0), (20, 3, 1, 0)] + [
    (10, 2, i, 1 if i == 7 else 0) for i in range(8)]


def start(kinds: list[str]) -> dict[str, Any]:
    from edge_agent.sim.display import DisplaySim
    from edge_agent.sim.idreader import IdReaderSim
    from edge_agent.sim.modbus import ModbusSim
    from edge_agent.sim.scanner import ScannerSim
    from edge_agent.sim.turnstile import TurnstileSim

    make: dict[str, Callable[[], Any]] = {"turnstile": lambda: TurnstileSim(pass_delay=0.5), "scanner": ScannerSim,
                                          "idreader": IdReaderSim, "display": DisplaySim, "modbus": ModbusSim}
    sims = {k: make[k]() for k in kinds}
    if "modbus" in sims:
        for reg in MODBUS_DEMO:
            sims["modbus"].set(*reg)
    return sims


def snippet(sims: dict[str, Any]) -> str:
    """Config fragments (TOML) wiring an agent to these devices."""
    out = []
    lane = {"scanner": "scanner", "idreader": "idreader", "turnstile": "turnstile"}
    if any(k in sims for k in lane):
        out += ['[[producers]]', 'type = "gate"', 'venue = "demo"', 'public_key = "<base64 Ed25519 public key>"',
                'capacity = 100', 'state_dir = "./gate-state"',
                'allowlist_key_file = "./allowlist.key"  # random secret: head -c 32 /dev/urandom | xxd -p -c 64 > it']
        if "display" in sims:
            out += [f'display = {{ port = "{sims["display"].path}" }}']
        out += ['[[producers.lanes]]', 'name = "lane-1"']
        out += [f'{k} = "{sims[k].path}"' for k in lane if k in sims]
    if "modbus" in sims:
        out += ['', '[[producers]]', 'type = "toilet"', f'port = "{sims["modbus"].path}"',
                'sensors = [{ name = "th", profile = "xy-md02" }, { name = "nh3", profile = "generic-nh3" },',
                '           { name = "h2s", profile = "generic-h2s" }, { name = "di", profile = "generic-di8" }]']
    return "\n".join(out)


def demo_card(number: str) -> Any:
    from edge_agent.sim.idreader import Card

    return Card("演示", "1", "01", "19900101", "演示地址", number, "演示机关", "20200101", "20400101")


def command(sims: dict[str, Any], line: str) -> str:
    """One stdin command -> a reply line (errors are replies too: a typo must not end the demo)."""
    parts = line.split()
    if not parts:
        return ""
    op, args = parts[0].lower(), parts[1:]
    try:
        if op == "scan" and args and "scanner" in sims:
            sims["scanner"].scan(" ".join(args))
            return "scanned"
        if op == "card" and len(args) == 1 and "idreader" in sims:
            sims["idreader"].place(demo_card(args[0]))
            return "card placed"
        if op == "set" and len(args) == 4 and "modbus" in sims:
            sims["modbus"].set(*(int(a, 0) for a in args))
            return "register set"
        if op == "walk" and args and args[0] in ("on", "off") and "turnstile" in sims:
            sims["turnstile"].walk_through = args[0] == "on"
            return f"walk {args[0]}"
        if op == "show":
            shown = sims["display"].text() if "display" in sims else "(no display)"
            opens = len(sims["turnstile"].opens) if "turnstile" in sims else 0
            return f"display: {shown!r}; turnstile openings: {opens}"
    except (ValueError, UnicodeEncodeError) as err:
        return f"error: {err}"
    return f"unknown or unavailable command: {line.strip()!r} (see edge-agent sim --help)"


def run(kinds: list[str], seconds: float | None, stdin: TextIO = sys.stdin, out: TextIO = sys.stdout) -> int:
    sims = start(kinds)
    try:
        for k, s in sims.items():
            print(f"{k:10s} {s.path}", file=out)
        print("\n# agent config using them:\n" + snippet(sims), file=out, flush=True)
        stop = threading.Event()
        threading.Thread(target=_watch, args=(sims, out, stop), daemon=True).start()
        deadline = None if seconds is None else time.monotonic() + seconds
        reader = threading.Thread(target=_read, args=(sims, stdin, out, stop), daemon=True)
        reader.start()
        while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
            stop.wait(0.1)
        stop.set()
    except KeyboardInterrupt:
        pass
    finally:
        for s in sims.values():
            s.close()
    return 0


def _read(sims: dict[str, Any], stdin: TextIO, out: TextIO, stop: threading.Event) -> None:
    for line in stdin:
        if line.strip().lower() in ("quit", "exit"):
            stop.set()
            return
        reply = command(sims, line)
        if reply:
            print(reply, file=out, flush=True)
    if stdin.isatty():
        stop.set()  # Ctrl-D; piped input that ends leaves the devices up (until --seconds or Ctrl-C)


def _watch(sims: dict[str, Any], out: TextIO, stop: threading.Event) -> None:
    seen_opens, shown = 0, ""
    while not stop.wait(0.2):
        if "turnstile" in sims and len(sims["turnstile"].opens) > seen_opens:
            for _, direction, persons in sims["turnstile"].opens[seen_opens:]:
                print(f"turnstile: OPEN {'in' if direction == 0 else 'out'} persons={persons}", file=out, flush=True)
            seen_opens = len(sims["turnstile"].opens)
        if "display" in sims and sims["display"].text() != shown:
            shown = sims["display"].text()
            print(f"display: {shown}", file=out, flush=True)
