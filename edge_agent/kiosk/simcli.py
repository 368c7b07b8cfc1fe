"""`edge-agent sim kiosk`: a hotel kiosk's devices, simulated on their real wire protocols, for demos.

Starts the key-card dispenser and receipt printer on ptys, the ID-card reader on a pty, the payment sandbox
on a loopback port, a local PMS with rooms and today's bookings, and a short camera clip of a guest turning
their head; prints an agent config that uses them, then takes commands on stdin:

    idcard [other]           the guest (or the second guest) lays their ID card on the reader
    take                     the guest takes the key card held at the dispenser's gate
    insert                   the guest inserts the last key card taken (check-out)
    jam | empty | binfull    the next card jams / the stacker is empty / the error-card bin is full
    paper ok|low|out         the printer's paper roll
    payment approve|decline|hang
    unplug dispenser|printer / plug dispenser|printer
    show                     what each device holds
    quit
"""

from __future__ import annotations

import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, TextIO

from edge_agent.kiosk import sim
from edge_agent.kiosk.demo import Rig


def camera_clip(folder: Path) -> Path:
    """A short MJPG clip of the demo guest turning their head (the camera a real kiosk would have)."""
    import cv2

    path = folder / "camera.avi"
    out = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 5, (640, 480))
    for frame in sim.live_frames("obama") * 4:
        out.write(frame)
    out.release()
    return path


def snippet(rig: Rig, camera: Path) -> str:
    c = rig.cfg
    return "\n".join([
        "[device]", 'id = "kiosk-01"', 'site = "demo-hotel"', 'role = "kiosk"',
        "[store]", f'path = "{rig.folder / "outbox.db"}"',
        "[[producers]]", 'type = "kiosk"', f'hotel = "{c.hotel}"', "port = 8080",
        f'idreader = "{c.idreader}"', f'camera = "{camera}"', f'key_file = "{c.key_file}"',
        f'state_dir = "{c.state_dir}"', f'hub_public_key = "{c.hub_public_key}"',
        f'dispenser = {{ port = "{c.dispenser.port}" }}',
        f'printer = {{ kind = "serial", port = "{c.printer.port}" }}',
        f'payment = {{ url = "{c.payment.url}" }}', f'pms = {{ path = "{c.pms.path}" }}'])


def command(rig: Rig, line: str, taken: list[Any]) -> str:
    parts = line.split()
    if not parts:
        return ""
    op, args = parts[0].lower(), parts[1:]
    if op == "idcard":
        rig.place_card(**({"name": "李娜", "face": "rose_leslie_img1"} if args[:1] == ["other"] else {}))
        return "ID card on the reader"
    if op == "take":
        card = rig.dispenser.take()
        if card is None:
            return "no card at the gate"
        taken.append(card)
        return f"took card {card.uid.hex()}"
    if op == "insert" and taken:
        rig.dispenser.insert(taken[-1])
        return "card held at the slot"
    flags = {"jam": ("jam_next", True), "empty": ("stacker", 0), "binfull": ("bin", rig.dispenser.bin_capacity)}
    if op in flags:
        setattr(rig.dispenser, *flags[op])
        return f"dispenser: {op}"
    if op == "paper" and args[:1] and args[0] in ("ok", "low", "out"):
        rig.printer.paper = args[0]
        return f"paper {args[0]}"
    if op == "payment" and args[:1] and args[0] in ("approve", "decline", "hang"):
        rig.payment.mode = args[0]
        return f"payment {args[0]}"
    if op in ("unplug", "plug") and args[:1] and args[0] in ("dispenser", "printer"):
        getattr(rig, args[0]).silent = op == "unplug"
        return f"{args[0]} {op}ged"
    if op == "show":
        d = rig.dispenser
        return (f"dispenser: stacker {d.stacker}, bin {d.bin}, channel {d.channel}; printer: paper {rig.printer.paper},"
                f" {len(rig.printer.receipts)} receipts; payment: {rig.payment.mode}, held {rig.payment.held()} cents")
    return f"unknown command: {line.strip()!r} (see edge-agent sim --help)"


def run(seconds: float | None, stdin: TextIO = sys.stdin, out: TextIO = sys.stdout) -> int:
    with tempfile.TemporaryDirectory(prefix="kiosk-sim-") as tmp:
        rig = Rig(Path(tmp))
        try:
            print(f"dispenser  {rig.dispenser.path}\nprinter    {rig.printer.path}\nidreader   {rig.idreader.path}\n"
                  f"payment    {rig.payment.url}\n\n# agent config using them:\n{snippet(rig, camera_clip(Path(tmp)))}",
                  file=out, flush=True)
            stop, taken = threading.Event(), []  # type: ignore[var-annotated]

            def read() -> None:
                for line in stdin:
                    if line.strip().lower() in ("quit", "exit"):
                        break
                    reply = command(rig, line, taken)
                    if reply:
                        print(reply, file=out, flush=True)
                stop.set()

            threading.Thread(target=read, daemon=True).start()
            deadline = None if seconds is None else time.monotonic() + seconds
            while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
                stop.wait(0.1)
        except KeyboardInterrupt:
            pass
        finally:
            rig.close()
    return 0
