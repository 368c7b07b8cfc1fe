"""Byte streams from the protocol documents, pinned: each driver must build the host's frames and parse the
device's, and each simulator must answer the documented request with the documented answer. The simulators
carry their own constants and checksums (edge_agent/sim/), so a wrong constant in a driver fails here instead of
passing on both sides.

Sources (cited per test):
- Modbus: MODBUS Application Protocol Specification V1.1b3 (modbus.org), examples of 6.2 (0x02), 6.3 (0x03) and
  6.4 (0x04); the 0x03 example as an RTU frame with its CRC from the Hamilton Sundstrand EXVG fuel metering
  valve manual, table 6 "Modbus Function 03 - Example"; RKC MA900 instruction manual (IMR01H02-E3) 6.6.1
  "Read holding registers [03H]"; the XY-MD02 temperature and humidity transmitter manual (register table and
  its worked values 0x0131 = 30.5 °C, 0xFF33 = -20.5 °C, 0x0222 = 54.6 %RH).
- ID card reader: "身份证阅读器模块SAM通讯协议" (DONSEE/东信, eastcoms.com/service/downdrive/508.html: frame
  format, CMD/PARA table, SW3 codes); the request/answer frames of a Huashi CVR-100D read over that protocol
  ("C# 使用串口分析SAM协议，读取身份证信息", yzsam.com/html/CNvfzM.html); the READ answer's header from
  "身份证阅读器SAM模块身份证信息解析说明" (eastcoms.com/service/downdrive/533.html); the failure answers
  `AA AA AA 96 69 00 04 00 00 41 45` and `... 32 36` from "身份证阅读器接口使用说明" (公安部第一研究所,
  as quoted at softs.im).
- Turnstile and LED board: protocols of this project; the worked examples of docs/turnstile-protocol.md and
  docs/display-protocol.md.
- Scanner: Intermec ScanPlus 1800 installation manual, "Data transmission settings RS-232": postamble CR LF by
  default, CR or LF selectable.
"""

from __future__ import annotations

import pytest
import serial

from edge_agent.drivers import DeviceTimeout, FrameError, display, idreader
from edge_agent.drivers import turnstile as ts
from edge_agent.drivers.serialio import LineReader
from edge_agent.sim import idreader as id_sim
from edge_agent.sim.base import PtyDevice
from edge_agent.sim.codec import crc16_modbus
from edge_agent.sim.display import DisplaySim
from edge_agent.sim.modbus import ModbusSim
from edge_agent.sim.turnstile import TurnstileSim
from edge_agent.toilet.modbus import Bus, Sensor
from edge_agent.toilet.profiles import Profile, load
from tests.helpers import Heard, wait_for


def hx(text: str) -> bytes:
    return bytes.fromhex(text)


class Scripted(PtyDevice):
    """A device that knows only the documents: it answers each documented request with the documented answer
    and keeps everything the host sent."""

    def __init__(self, script: dict[bytes, bytes]) -> None:
        self.script, self.heard = script, bytearray()
        super().__init__()

    def on_bytes(self, chunk: bytes) -> None:
        self.heard += chunk
        for request, answer in self.script.items():
            if self.heard.endswith(request):
                self.pty.write(answer)


# ------------------------------------------------------------------ turnstile (docs/turnstile-protocol.md)

OPEN_2 = hx("55 AA 01 01 02 00 02 38 3D")
ACK_OPEN = hx("55 AA 01 81 02 01 00 91 AC")
PASSED_1, PASSED_0 = hx("55 AA 01 83 02 00 01 50 44"), hx("55 AA 01 83 02 00 00 91 84")
STATUS = hx("55 AA 01 02 00 21 60")
ALARM_TAILGATING = hx("55 AA 01 84 01 02 C1 A0")


def test_turnstile_driver_builds_and_parses_the_documents_worked_example() -> None:
    assert ts.open_cmd(1, ts.IN, 2).encode() == OPEN_2
    assert ts.Frame(1, ts.STATUS, b"").encode() == STATUS
    p = ts.StreamParser()
    got = p.feed(ACK_OPEN + PASSED_1[:4]) + p.feed(PASSED_1[4:] + PASSED_0 + ALARM_TAILGATING)
    assert got == [ts.Frame(1, ts.ACK, b"\x01\x00"), ts.Frame(1, ts.PASSED, b"\x00\x01"),
                   ts.Frame(1, ts.PASSED, b"\x00\x00"), ts.Frame(1, ts.ALARM, b"\x02")] and p.bad == 0
    assert ts.crc16(b"123456789") == 0x4B37 == int.from_bytes(crc16_modbus(b"123456789"), "little")


def test_turnstile_simulator_answers_the_worked_example() -> None:
    with TurnstileSim() as sim, serial.Serial(sim.path, 115200, timeout=2) as port:
        port.write(OPEN_2)
        assert port.read(len(ACK_OPEN + PASSED_1 + PASSED_0)) == ACK_OPEN + PASSED_1 + PASSED_0
        assert sim.opens[-1][1:] == (0, 2)
        port.write(OPEN_2[:-1] + b"\x00")  # a bad CRC: a controller stays silent
        port.write(STATUS)
        assert port.read(9) == hx("55 AA 01 82 02 00 00") + crc16_modbus(hx("01 82 02 00 00"))
        assert len(sim.opens) == 1


def test_turnstile_driver_opens_a_documented_controller() -> None:
    """The driver against a controller that knows only the document's bytes."""
    events = Heard()
    with Scripted({OPEN_2: ACK_OPEN + PASSED_1 + PASSED_0}) as dev, serial.Serial(dev.path, 115200,
                                                                                  timeout=0.05) as port:
        drv = ts.TurnstileDriver(port, 1, events).start()
        try:
            drv.open(ts.IN, 2, timeout=2)
            assert events.wait(lambda f: f.payload == b"\x00\x00", 2)
        finally:
            drv.close()
        assert bytes(dev.heard) == OPEN_2
        assert [f.payload for f in events.items] == [b"\x00\x01", b"\x00\x00"]


# ------------------------------------------------------------------ Modbus RTU (spec and vendor manuals)

def profile(function: int, first: int, count: int, **extra: object) -> Profile:
    return Profile.model_validate({"registers": [{"name": f"r{first + i}", "function": function,
                                                  "address": first + i, **extra} for i in range(count)]})


def poll(script: dict[bytes, bytes], prof: Profile, address: int) -> tuple[Sensor, bytes]:
    """One poll of a sensor by the Modbus driver (pymodbus) against a device that replays the documents."""
    with Scripted(script) as dev:
        bus = Bus(dev.path, 9600, "N", timeout_s=0.5, retries=0)
        try:
            s = Sensor("doc", prof, address)
            bus.poll(s, fail_after=1)
        finally:
            bus.close()
        return s, bytes(dev.heard)


def test_modbus_driver_reads_holding_registers_as_the_spec_example() -> None:
    # spec 6.3 example (registers 108-110 = 0x022B, 0x0000, 0x0064) as the EXVG manual frames it, table 6
    request, answer = hx("01 03 00 6B 00 03 74 17"), hx("01 03 06 02 2B 00 00 00 64 05 7A")
    s, sent = poll({request: answer}, profile(3, 0x6B, 3), 1)
    assert sent == request and s.available and s.values == {"r107": 555, "r108": 0, "r109": 100}
    # RKC MA900 manual 6.6.1: three holding registers from 0000H at slave 2, and its error response
    request, answer = hx("02 03 00 00 00 03 05 F8"), hx("02 03 06 00 00 00 01 00 02 E5 84")
    s, sent = poll({request: answer}, profile(3, 0, 3), 2)
    assert sent == request and s.values == {"r0": 0, "r1": 1, "r2": 2}
    s, _ = poll({request: hx("02 83 03 F1 31")}, profile(3, 0, 3), 2)
    assert s.available is False and s.failures == 1 and "exception" in s.last_error.lower()


def rtu(pdu: bytes, address: int = 1) -> bytes:
    """A spec PDU example as an RTU frame (the CRC by the simulators' own table-driven code)."""
    return bytes([address]) + pdu + crc16_modbus(bytes([address]) + pdu)


def test_modbus_driver_reads_discrete_inputs_and_input_registers_as_the_spec_examples() -> None:
    # spec 6.2: inputs 197-218 (addresses 0xC4..); "input 204 is the MSB of AC, input 197 the LSB"
    pdu_req, pdu_ans = hx("02 00 C4 00 16"), hx("02 03 AC DB 35")
    s, sent = poll({rtu(pdu_req): rtu(pdu_ans)}, profile(2, 0xC4, 22), 1)
    bits = "".join(str(int(s.values[f"r{0xC4 + i}"])) for i in range(22))
    assert sent == rtu(pdu_req) and bits == "0011010111011011101011"
    # spec 6.4: input register 9 (address 0x0008) = 0x000A
    s, sent = poll({rtu(hx("04 00 08 00 01")): rtu(hx("04 02 00 0A"))}, profile(4, 8, 1), 1)
    assert s.values == {"r8": 10}


def test_xy_md02_profile_matches_its_manual() -> None:
    """Input registers 0x0001 (temperature, signed, 0.1 °C) and 0x0002 (humidity, 0.1 %RH), read together."""
    request = hx("01 04 00 01 00 02 20 0B")
    answer = hx("01 04 04 01 31 02 22") + crc16_modbus(hx("01 04 04 01 31 02 22"))
    s, sent = poll({request: answer}, load()["xy-md02"], 1)
    assert sent == request and s.values == {"temperature_c": 30.5, "humidity_pct": 54.6}
    answer = hx("01 04 04 FF 33 02 22") + crc16_modbus(hx("01 04 04 FF 33 02 22"))
    s, _ = poll({request: answer}, load()["xy-md02"], 1)
    assert s.values["temperature_c"] == -20.5


def test_modbus_simulator_answers_the_spec_example() -> None:
    with ModbusSim() as sim, serial.Serial(sim.path, 9600, timeout=2) as port:
        for reg, value in ((0x6B, 0x022B), (0x6C, 0), (0x6D, 0x64)):
            sim.set(1, 3, reg, value)
        port.write(hx("01 03 00 6B 00 03 74 17"))
        assert port.read(11) == hx("01 03 06 02 2B 00 00 00 64 05 7A")
        for reg, value in ((1, 0x0131), (2, 0x0222)):
            sim.set(1, 4, reg, value)
        port.write(hx("01 04 00 01 00 02 20 0B"))
        assert port.read(9)[:7] == hx("01 04 04 01 31 02 22")


# ------------------------------------------------------------------ 2nd-generation ID card reader (SAM protocol)

FIND, SELECT, READ = hx("AA AA AA 96 69 00 03 20 01 22"), hx("AA AA AA 96 69 00 03 20 02 21"), \
    hx("AA AA AA 96 69 00 03 30 01 32")
FOUND = hx("AA AA AA 96 69 00 08 00 00 9F 00 00 00 00 97")
SELECTED = hx("AA AA AA 96 69 00 0C 00 00 90 00 00 00 00 00 00 00 00 9C")
READ_HEAD = hx("AA AA AA 96 69 05 08 00 00 90 01 00 04 00")  # LEN 0x0508 = 1288: SW, 256 text, 1024 photo, CHK
READ_FAILED = hx("AA AA AA 96 69 00 04 00 00 41 45")
NO_CARD = hx("AA AA AA 96 69 00 04 00 00 80 84")  # SW3 80 "搜寻身份证失败", CHK by the documented rule

CARD = id_sim.Card("张三", "1", "01", "19491231", "北京市东城区", "11010519491231002X", "公安局", "20200101",
                   "20400101")


def read_answer(card: id_sim.Card) -> bytes:
    body = READ_HEAD[5:] + card.text() + b"\x00" * 1024
    chk = 0
    for b in body:
        chk ^= b
    return READ_HEAD[:5] + body + bytes([chk])


def test_id_reader_driver_builds_the_documented_commands_and_parses_the_answers() -> None:
    assert [idreader.command(c) for c in (idreader.CMD_FIND, idreader.CMD_SELECT, idreader.CMD_READ)] == \
        [FIND, SELECT, READ]
    p = idreader.StreamParser()
    answer = read_answer(CARD)
    got = p.feed(FOUND + SELECTED + answer[:700]) + p.feed(answer[700:] + READ_FAILED)
    assert [r.status.hex() for r in got] == ["00009f", "000090", "000090", "000041"] and p.bad == 0
    assert idreader.parse_card(got[2].data) == idreader.IdCard(*(getattr(CARD, f) for f, _ in id_sim.LAYOUT))
    assert len(answer) == 1295  # "返回值: 1295 字节数据身份证信息"


def test_id_reader_driver_reads_a_card_from_a_documented_reader() -> None:
    with Scripted({FIND: FOUND, SELECT: SELECTED, READ: read_answer(CARD)}) as dev, \
            serial.Serial(dev.path, 115200, timeout=0.05) as port:
        card = idreader.Reader(port, timeout_s=1).poll()
        assert bytes(dev.heard) == FIND + SELECT + READ
    assert card is not None and card.id_number == "11010519491231002X" and card.name == "张三"
    with Scripted({FIND: NO_CARD}) as dev, serial.Serial(dev.path, 115200, timeout=0.05) as port:
        assert idreader.Reader(port, timeout_s=1).poll() is None
    with Scripted({FIND: FOUND, SELECT: SELECTED, READ: READ_FAILED}) as dev, \
            serial.Serial(dev.path, 115200, timeout=0.05) as port, pytest.raises(FrameError, match="000041"):
        idreader.Reader(port, timeout_s=1).poll()
    with Scripted({}) as dev, serial.Serial(dev.path, 115200, timeout=0.05) as port, pytest.raises(DeviceTimeout):
        idreader.Reader(port, timeout_s=0.3).poll()


def test_id_reader_simulator_answers_the_documented_commands() -> None:
    with id_sim.IdReaderSim() as sim, serial.Serial(sim.path, 115200, timeout=2) as port:
        port.write(FIND)
        assert port.read(len(NO_CARD)) == NO_CARD
        sim.place(CARD)
        port.write(FIND)
        assert port.read(len(FOUND)) == FOUND
        port.write(SELECT)
        assert port.read(len(SELECTED)) == SELECTED
        port.write(READ)
        assert port.read(1295) == read_answer(CARD)
        # a command whose checksum does not add up (as the driver once sent READ: 30 01 FF CD under LEN 00 03)
        port.write(hx("AA AA AA 96 69 00 03 30 01 FF CD"))
        assert port.read(11)[7:10] == b"\x00\x00\x10"


# ------------------------------------------------------------------ LED board (docs/display-protocol.md)

def test_display_driver_and_simulator_follow_the_worked_example() -> None:
    assert display.text_cmd(0, "WELCOME", "G") == b"$T,0,G,WELCOME*55\r\n"
    assert display.text_cmd(0, "在园 10/100", "Y") == b"$T,0,Y," + hx("D4 DA D4 B0") + b" 10/100*44\r\n"
    assert display.frame(b"C") == b"$C*43\r\n" and display.frame(b"B,5") == b"$B,5*5B\r\n"
    assert display.parse(b"$A*41").op == "A" and display.parse(b"$N*4E").op == "N"
    with DisplaySim() as sim, serial.Serial(sim.path, 9600, timeout=2) as port:
        port.write(b"$T,0,Y," + hx("D4 DA D4 B0") + b" 10/100*44\r\n")
        assert port.read(7) == b"$A*41\r\n"
        port.write(b"$T,0,G,WELCOME*54\r\n")  # checksum off by one
        assert port.read(7) == b"$N*4E\r\n"
        wait_for(lambda: sim.rows == {0: ("在园 10/100", "Y")}, 2, "the row shown")


# ------------------------------------------------------------------ QR scanner (ASCII lines)

def test_scanner_lines_with_each_documented_postamble() -> None:
    code = b"VT1.eyJ0IjoiVDEifQ.c2ln"
    r = LineReader()
    assert r.feed(code + b"\r\n") == [code.decode()]  # default: CR LF
    assert r.feed(code + b"\r" + code + b"\n") == [code.decode()] * 2  # CR only, LF only
    assert r.feed(b"\x02" + code + b"\x03\r\n") == [] and r.bad == 1, "STX/ETX framing is not a ticket"
