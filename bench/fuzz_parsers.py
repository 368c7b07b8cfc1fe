"""Fuzz campaign over every frame parser: random bytes and mutations of valid frames, fed in random
chunk sizes (partial frames, noise between frames). A crash is any exception other than the parser's
documented rejection. Ends with: RESULT frames=<n> crashes=<n> (+ rejected counts).
"""

from __future__ import annotations

import argparse
import logging
import random
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402

from edge_agent.core import idnumber  # noqa: E402
from edge_agent.drivers import FrameError, display, idreader, turnstile  # noqa: E402
from edge_agent.drivers.serialio import LineReader  # noqa: E402
from edge_agent.gate import tickets  # noqa: E402
from edge_agent.nodes.role import BadBatch, parse_batch  # noqa: E402
from edge_agent.sim import idreader as id_sim  # noqa: E402
from edge_agent.sync import envelope  # noqa: E402
from edge_agent.sync.downlink import CommandRouter  # noqa: E402


def mutate(rng: random.Random, frame: bytes) -> bytes:
    b = bytearray(frame)
    for _ in range(rng.randint(1, 4)):
        op = rng.random()
        if op < 0.4 and b:
            b[rng.randrange(len(b))] = rng.randrange(256)
        elif op < 0.6 and b:
            del b[rng.randrange(len(b))]
        elif op < 0.8:
            b.insert(rng.randrange(len(b) + 1), rng.randrange(256))
        else:
            b = b[: rng.randrange(len(b) + 1)]
    return bytes(b)


def seeds() -> dict[str, list[bytes]]:
    card = id_sim.Card("张三", "1", "01", "19900101", "浙江省杭州市西湖区", "11010519491231002X", "西湖分局",
                       "20200101", "20400101")
    key = Ed25519PrivateKey.generate()
    qr = tickets.sign(tickets.Ticket("T1", "westlake", "2026-11-22", "10:00-11:00", 2, 2e9), key)
    return {
        "idreader": [id_sim.read_answer(card), id_sim.answer(id_sim.FOUND, b"\x00" * 4),
                     idreader.command(idreader.CMD_READ)],
        "turnstile": [turnstile.open_cmd(1, 0, 2).encode(), turnstile.Frame(1, turnstile.PASSED, b"\x00\x01").encode(),
                      turnstile.Frame(1, turnstile.ALARM, b"\x02").encode()],
        "scanner": [qr.encode() + b"\r\n", b"11010519491231002X\n"],
        "envelope": [envelope.encode_ack(envelope.Ack("b", envelope.DataClass.STATE, [[1, 2]], [], 2, 0))],
        "command": [b'{"id":"1","args":{"patch":{"sync":{"window":4}}}}'],
        "display": [display.text_cmd(1, "已满 FULL", "R"), display.frame(b"A"), display.frame(b"B,5")],
        # Modbus RTU replies as a sensor sends them (parsed by pymodbus's RTU framer, as the toilet role does)
        "modbus": [rtu(bytes([1, 4, 4, 0x00, 0xEB, 0x02, 0x26])), rtu(bytes([2, 3, 2, 0x01, 0x90])),
                   rtu(bytes([10, 2, 1, 0b10000001])), rtu(bytes([3, 0x83, 2]))],
        "node": [b'{"ring":"5f3a9c0e11d2a7b4","recs":[[17,1795000000.5,"air",{"t_c":24.5,"rh":60.0,"nh3_ppm":6.25}],'
                 b'[18,null,"stall",{"stall":1,"occupied":true}]]}'],
    }, key


def rtu(body: bytes) -> bytes:
    return body + turnstile.crc16(body).to_bytes(2, "little")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--frames", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    logging.disable(logging.WARNING)  # every rejection is logged by design; a million of them is noise here
    rng = random.Random(a.seed)
    corpus, key = seeds()
    pub = key.public_key()
    parsers = {"idreader": idreader.StreamParser(), "turnstile": turnstile.StreamParser(), "scanner": LineReader()}
    from pymodbus.exceptions import ModbusException
    from pymodbus.framer import FramerRTU
    from pymodbus.pdu import DecodePDU

    rtu_framer = FramerRTU(DecodePDU(is_server=False))
    logging.getLogger("pymodbus").disabled = True
    router = CommandRouter({"config": lambda args: {"ok": True}}, None)  # the parser; signatures: test_commands.py
    names = list(corpus)
    crashes, frames, accepted = 0, 0, {n: 0 for n in names}
    rejected_display = rejected_modbus = rejected_node = 0
    t0 = time.perf_counter()
    while frames < a.frames:
        name = names[frames % len(names)]
        base = rng.choice(corpus[name])
        r = rng.random()
        data = base if r < 0.05 else mutate(rng, base) if r < 0.8 else rng.randbytes(rng.randint(0, 300))
        frames += 1
        try:
            if name in parsers:
                pos = 0
                while pos < len(data):  # random chunking: partial frames across reads
                    step = rng.randint(1, 64)
                    got = parsers[name].feed(data[pos:pos + step])
                    pos += step
                    accepted[name] += len(got)
                    for item in got:
                        if name == "idreader" and item.ok and item.data:
                            try:
                                idreader.parse_card(item.data)
                            except FrameError:
                                pass
                        elif name == "scanner":
                            idnumber.validate(item)
                            try:
                                tickets.parse(item, pub)
                            except ValueError:
                                pass
            elif name == "display":
                try:
                    display.parse(data.rstrip(b"\r\n"))
                    accepted[name] += 1
                except FrameError:
                    rejected_display += 1
            elif name == "modbus":
                try:
                    _, pdu = rtu_framer.handleFrame(data, 0, 0)
                    if pdu is None:
                        rejected_modbus += 1
                    else:
                        accepted[name] += 1
                        regs = getattr(pdu, "registers", None) or []
                        assert all(0 <= r <= 0xFFFF for r in regs)
                except ModbusException:
                    rejected_modbus += 1
            elif name == "node":
                try:
                    _, good, bad = parse_batch(data)
                    accepted[name] += len(good)
                    rejected_node += bad
                except BadBatch:
                    rejected_node += 1
            elif name == "envelope":
                try:
                    envelope.decode_ack(data)
                    accepted[name] += 1
                except envelope.EnvelopeError:
                    pass
            else:
                res = router.handle("config", data)
                accepted[name] += int(res["ok"])
        except Exception:
            crashes += 1
            if crashes <= 5:
                traceback.print_exc()
    dt = time.perf_counter() - t0
    rejected = {n: p.bad for n, p in parsers.items()}
    print(f"{frames:,} frames in {dt:.1f} s ({frames / dt:,.0f}/s); accepted {accepted}; rejected {rejected}")
    print(f"RESULT frames={frames} crashes={crashes} rejected_idreader={rejected['idreader']} "
          f"rejected_turnstile={rejected['turnstile']} rejected_scanner={rejected['scanner']} "
          f"rejected_display={rejected_display} rejected_modbus={rejected_modbus} rejected_node={rejected_node}")


if __name__ == "__main__":
    main()
