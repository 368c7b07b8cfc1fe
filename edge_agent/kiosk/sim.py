"""Kiosk device simulators for tests and `edge-agent sim kiosk`: each speaks the real wire protocol.

- DispenserSim: a CRT-591-family key-card dispenser on a pty (frames, ACK/NAK, status, Mifare cards),
  with a stacker, an error-card bin and faults (jam, empty hopper, full bin, unplugged).
- PrinterSim: an ESC/POS receipt printer on a pty answering DLE EOT 1/4 (online, paper) and keeping what
  it printed; paper can run out.
- PaymentSandbox: the deposit provider's HTTP API (edge_agent/kiosk/payment.py) on a loopback port, with
  idempotency keys and decline / no-answer modes.
- FrameCamera: frames from images held in memory (the camera seam's fake).
The ID-card reader simulator is edge_agent/sim/idreader.py; `sample_card` builds a card for it.
"""

from __future__ import annotations

import json
import os
import re
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from edge_agent.kiosk import DeviceUnavailable
from edge_agent.kiosk import dispenser as d
from edge_agent.sim.base import PtyDevice
from edge_agent.sim.idreader import Card

FACES = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "faces"


# ---------------------------------------------------------------------------- key-card dispenser

@dataclass
class MifareCard:
    uid: bytes = field(default_factory=lambda: os.urandom(4))
    key_a: bytes = b"\xff" * 6
    blocks: dict[tuple[int, int], bytes] = field(default_factory=dict)


class DispenserSim(PtyDevice):
    """State: `stacker` cards left, `bin` captured, `channel` ('empty'/'gate'/'rf') with `card` in it."""

    def __init__(self, stacker: int = 50, bin_capacity: int = 20) -> None:
        self.stacker, self.bin, self.bin_capacity = stacker, 0, bin_capacity
        self.channel = "empty"
        self.card: MifareCard | None = None
        self.insert_allowed = False
        self.jam_next = False  # the next card moved out of the stacker jams
        self.silent = False  # unplugged: nothing answers
        self.fail_write = False
        self.issued: list[MifareCard] = []  # cards the guest took from the gate
        self.captured: list[MifareCard] = []
        self.waiting: MifareCard | None = None  # a card the guest holds at the gate (check-out)
        self.auth: set[int] = set()
        self.parser = d.Parser()
        self.commands: list[bytes] = []
        self.lock = threading.Lock()
        super().__init__()

    # guest actions
    def take(self) -> MifareCard | None:
        """The guest takes the card held at the gate."""
        with self.lock:
            if self.channel != "gate" or self.card is None:
                return None
            card, self.channel, self.card = self.card, "empty", None
            self.issued.append(card)
            return card

    def insert(self, card: MifareCard) -> None:
        """The guest holds a card at the gate; the unit pulls it in when insertion is allowed."""
        with self.lock:
            self.waiting = card

    def on_bytes(self, chunk: bytes) -> None:
        if self.silent:
            return
        bad = self.parser.bad
        for item in self.parser.feed(chunk):
            if isinstance(item, d.Packet) and item.head == "C":
                self.commands.append(bytes([item.cm, item.pm]) + item.data)
                self.pty.write(bytes([d.ACK]))
                with self.lock:
                    self.pty.write(self._answer(item))
        if self.parser.bad > bad:
            self.pty.write(bytes([d.NAK]))

    def _status(self) -> bytes:
        if self.waiting is not None and self.insert_allowed and self.channel == "empty":
            self.channel, self.card, self.waiting = "rf", self.waiting, None
        st0 = {"empty": b"0", "gate": b"1", "rf": b"2"}[self.channel]
        st1 = b"0" if self.stacker == 0 else (b"1" if self.stacker < 5 else b"2")
        return st0 + st1 + (b"1" if self.bin >= self.bin_capacity else b"0")

    def _ok(self, p: d.Packet, data: bytes = b"") -> bytes:
        return d.frame(p.cm, p.pm, self._status() + data, head=b"P")

    def _no(self, p: d.Packet, code: bytes) -> bytes:
        return d.frame(p.cm, p.pm, code, head=b"N")

    def _answer(self, p: d.Packet) -> bytes:
        if p.cm == d.RESET:
            self.jam_next = False
            return self._ok(p, b"QU-TK-F31-SIM")
        if p.cm == d.STATUS:
            return self._ok(p)
        if p.cm == d.INSERT:
            self.insert_allowed = p.pm == 0x30
            return self._ok(p)
        if p.cm == d.MOVE:
            return self._move(p)
        if p.cm == d.RF:
            return self._rf(p)
        return self._no(p, b"00")

    def _move(self, p: d.Packet) -> bytes:
        if p.pm == d.TO_RF and self.channel == "empty":
            if self.stacker == 0:
                return self._no(p, b"A0")
            self.stacker -= 1
            self.channel, self.card, self.auth = "rf", MifareCard(), set()
            if self.jam_next:
                self.jam_next = False
                return self._no(p, b"10")
            return self._ok(p)
        if self.channel == "empty" or self.card is None:
            return self._no(p, b"02")  # command sequence error: no card to move
        if p.pm == d.TO_BIN:
            if self.bin >= self.bin_capacity:
                return self._no(p, b"A1")
            self.bin += 1
            self.captured.append(self.card)
            self.channel, self.card = "empty", None
        elif p.pm == d.TO_GATE:
            self.channel = "gate"
        elif p.pm == d.EJECT:
            self.issued.append(self.card)
            self.channel, self.card = "empty", None
        elif p.pm != d.TO_RF:
            return self._no(p, b"01")
        return self._ok(p)

    def _rf(self, p: d.Packet) -> bytes:
        card = self.card if self.channel == "rf" else None
        if card is None:
            return self._no(p, b"61")
        if p.pm == d.RF_ACTIVATE:
            return self._ok(p, b"M\x00\x04" + bytes([len(card.uid)]) + card.uid + b"\x08")
        if p.pm == d.RF_DEACTIVATE:
            self.auth = set()
            return self._ok(p)
        a = p.data
        if p.pm != d.RF_MIFARE or len(a) < 5:
            return self._no(p, b"01")
        if a[1] == d.MF_VERIFY_KEY:
            ok = a[5:11] == card.key_a
            if ok:
                self.auth.add(a[3])
            return self._ok(p, b"\x90\x00" if ok else b"\x6f\x00")
        sector, block, count = a[2], a[3], a[4]
        if sector not in self.auth:
            return self._ok(p, b"\x6f\x00")
        if a[1] == d.MF_READ:
            data = b"".join(card.blocks.get((sector, block + i), bytes(16)) for i in range(count))
            return self._ok(p, data + b"\x90\x00")
        if a[1] == d.MF_WRITE and not self.fail_write:
            for i in range(count):
                card.blocks[(sector, block + i)] = a[5 + 16 * i:21 + 16 * i]
            return self._ok(p, b"\x90\x00")
        return self._ok(p, b"\x6f\x00")


# ---------------------------------------------------------------------------- receipt printer

_ESC_SEQ = re.compile(rb"\x1b[@]|\x1b[\x20-\x7e][\x00-\xff]|\x1d[\x20-\x7e][\x00-\xff]|\x1c[&.]|\x10\x04[\x01-\x04]")


class PrinterSim(PtyDevice):
    """`paper`: 'ok', 'low' or 'out'. Received receipts are split at each cut (GS V)."""

    def __init__(self) -> None:
        self.paper = "ok"
        self.silent = False
        self.raw = bytearray()
        self.receipts: list[str] = []
        super().__init__()

    def on_bytes(self, chunk: bytes) -> None:
        if self.silent:
            return
        self.raw += chunk
        for m in re.finditer(rb"\x10\x04([\x01-\x04])", chunk):
            n = m.group(1)[0]
            if n == 4:
                self.pty.write(bytes([{"ok": 0x12, "low": 0x1E, "out": 0x72}[self.paper]]))
            else:
                self.pty.write(bytes([0x16 if self.paper != "out" or n != 1 else 0x1E]))
        while (i := self.raw.find(b"\x1dV")) >= 0:
            job, self.raw = bytes(self.raw[:i]), self.raw[i + 3:]
            if self.paper != "out":
                self.receipts.append(_ESC_SEQ.sub(b"", job).decode("gb18030", "replace"))


# ---------------------------------------------------------------------------- payment sandbox

class PaymentSandbox:
    """`mode`: 'approve', 'decline' or 'hang' (authorises, then answers only after `release` or 30 s)."""

    def __init__(self) -> None:
        self.mode = "approve"
        self.capture_mode = "approve"
        self.release = threading.Event()
        self.preauths: dict[str, dict[str, Any]] = {}
        self.replies: dict[str, tuple[int, dict[str, Any]]] = {}  # idempotency key → first answer
        self.calls: list[tuple[str, str, str | None]] = []
        self.lock = threading.Lock()
        sandbox = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                self._send(200, {"ok": True})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                key = self.headers.get("Idempotency-Key")
                code, reply = sandbox.handle(self.path, body, key)
                if reply.get("_hang"):
                    sandbox.release.wait(30)
                    reply.pop("_hang")
                self._send(code, reply)

            def _send(self, code: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                try:
                    self.send_response(code)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass  # the client gave up waiting

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, name="payment-sandbox", daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def handle(self, path: str, body: dict[str, Any], key: str | None) -> tuple[int, dict[str, Any]]:
        with self.lock:
            self.calls.append(("POST", path, key))
            if key and key in self.replies:
                return self.replies[key]  # the same request again: the same answer, nothing done twice
            code, reply = self._do(path, body, key)
            if key:
                self.replies[key] = (code, {k: v for k, v in reply.items() if k != "_hang"})
            return code, reply

    def _do(self, path: str, body: dict[str, Any], key: str | None) -> tuple[int, dict[str, Any]]:
        if path == "/v1/preauths":
            if self.mode == "decline" or not isinstance(body.get("amount"), int) or body["amount"] <= 0:
                return 402, {"status": "declined", "reason": "card declined by issuer"}
            pid = "pa_" + uuid.uuid4().hex[:12]
            self.preauths[pid] = {"amount": body["amount"], "status": "authorized", "key": key, "captured": 0}
            return 201, {"id": pid, "status": "authorized", **({"_hang": True} if self.mode == "hang" else {})}
        if path == "/v1/voids":
            for pa in self.preauths.values():
                if pa["key"] == body.get("idempotency_key") and pa["status"] == "authorized":
                    pa["status"] = "voided"
            return 200, {"status": "voided"}
        m = re.fullmatch(r"/v1/preauths/(pa_[0-9a-f]+)/(capture|void)", path)
        if not m or m.group(1) not in self.preauths:
            return 404, {"reason": "no such pre-authorisation"}
        pa = self.preauths[m.group(1)]
        if pa["status"] != "authorized":
            return 409, {"reason": f"pre-authorisation is {pa['status']}"}
        if m.group(2) == "void":
            pa["status"] = "voided"
            return 200, {"status": "voided"}
        amount = body.get("amount")
        if self.capture_mode == "decline" or not isinstance(amount, int) or not 0 <= amount <= pa["amount"]:
            return 402, {"reason": "capture refused"}
        pa["status"], pa["captured"] = "captured", amount
        return 200, {"status": "captured", "amount": amount}

    def held(self) -> int:
        """Money currently held on guests' cards (authorised, neither captured nor voided)."""
        with self.lock:
            return sum(p["amount"] for p in self.preauths.values() if p["status"] == "authorized")

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


# ---------------------------------------------------------------------------- camera and ID card

class FrameCamera:
    """The camera seam's fake: cycles through images held in memory; `unplugged` makes it fail."""

    def __init__(self, images: list[Any]) -> None:
        self.images, self.i, self.unplugged = list(images), 0, False

    def health(self) -> str:
        return "unavailable" if self.unplugged else "ok"

    def frames(self, n: int) -> list[Any]:
        if self.unplugged or not self.images:
            raise DeviceUnavailable("camera unplugged")
        out = [self.images[(self.i + k) % len(self.images)] for k in range(n)]
        self.i += n
        return out


def load_faces(*names: str) -> list[Any]:
    """Fixture photos as BGR images (tests/fixtures/faces)."""
    import cv2

    return [cv2.imread(str(FACES / f"{n}.jpg")) for n in names]


def live_frames(person: str = "obama") -> list[Any]:
    """A guest turning their head: photos of one person in different poses, on a 640×480 frame."""
    import cv2
    import numpy as np

    names = {"obama": ("obama", "obama2", "obama3"), "rose": ("rose_leslie_img1", "rose_leslie_img2"),
             "kit": ("kit_harington_john1", "kit_harington_john2")}[person]
    out = []
    for img in load_faces(*names):
        canvas = np.zeros((480, 640, 3), np.uint8)
        h, w = img.shape[:2]
        s = min(640 / w, 480 / h)
        small = cv2.resize(img, (int(w * s), int(h * s)))
        canvas[: small.shape[0], : small.shape[1]] = small
        out.append(canvas)
    return out


def id_photo(name: str = "obama", quality: int = 70) -> bytes:
    """A 102×126 JPEG head-and-shoulders photo like the ones readers deliver (fits the reader's frame)."""
    import cv2

    from edge_agent.kiosk.face import FaceMatcher

    img = load_faces(name)[0]
    _, faces = FaceMatcher().faces(img)
    x, y, w, h = (float(v) for v in faces[0][:4])
    scale = min(1.0, 640 / max(img.shape[:2]))
    x, y, w, h = x / scale, y / scale, w / scale, h / scale
    height = h * 1.9
    width = height * 102 / 126
    x0, y0 = int(max(0, x + w / 2 - width / 2)), int(max(0, y + h / 2 - height * 0.52))
    crop = cv2.resize(img[y0:int(y0 + height), x0:int(x0 + width)], (102, 126), interpolation=cv2.INTER_AREA)
    ok, jpg = cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, quality])
    return bytes(jpg)


def sample_card(name: str, number: str, photo: bytes = b"", valid_to: str = "20400101") -> Card:
    return Card(name, "1", "01", "19900101", "演示地址", number, "演示公安局", "20200101", valid_to, photo=photo)
