"""Kiosk device seams against their simulators on real wire protocols: the CRT-591-family dispenser (frames
pinned from its protocol document), the ESC/POS printer (python-escpos, its Dummy and a pty printer), the
payment sandbox over HTTP, the local PMS, the ID-card reader's photo, the vault and the key-card format."""

from __future__ import annotations

import os
import random
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from escpos.printer import Dummy

from edge_agent.drivers import idreader
from edge_agent.drivers.serialio import open_port
from edge_agent.kiosk import DeviceFault, DeviceUnavailable, NotFound, PaymentDeclined, PaymentUnknown
from edge_agent.kiosk import dispenser as d
from edge_agent.kiosk import keycard as kc
from edge_agent.kiosk.config import PrinterConfig
from edge_agent.kiosk.devices import KeyCardDispenser, SerialIdReader
from edge_agent.kiosk.payment import HttpPayment
from edge_agent.kiosk.pms import SqlitePms
from edge_agent.kiosk.printer import EscposPrinter, make_escpos
from edge_agent.kiosk.privacy import KeyFileError, Vault, load_key, mask_id, open_sealed, seal
from edge_agent.kiosk.sim import DispenserSim, PaymentSandbox, PrinterSim, id_photo, sample_card
from edge_agent.sim.idreader import IdReaderSim
from tests.helpers import wait_for

KEY = b"k" * 32
GRANT = kc.Grant("1208", 7, 1_700_000_000, 1_700_172_800)
ON_CARD = kc.Grant("1208", 7, 1_700_000_000 // 60 * 60, 1_700_172_800 // 60 * 60)  # minutes on the card


# ---------------------------------------------------------------------------- CRT-591 protocol

def test_frames_pinned_from_the_protocol_document() -> None:
    # QUIO QU-TK-F3 Series Communication Protocol v1.03 (2019-01-10), the CRT-591 frame format (§3):
    # §9.1 Reset, Pm=33H (do not move a card in the channel); the same nine bytes drive a Creator CRT-591
    # in the public SWTest-ATM driver (abstractcrt591.cpp, init "not move card").
    assert d.frame(0x30, 0x33) == bytes.fromhex("F2 00 00 03 43 30 33 03 B2")
    # §9.2 Inquire status, Pm=30H
    assert d.frame(0x31, 0x30) == bytes.fromhex("F2 00 00 03 43 31 30 03 B0")
    # §9.10.4.1 Key verification: Key A, sector 0, 6-byte key FF…FF (the driver's comment gives these bytes)
    assert d.frame(0x60, 0x33, bytes.fromhex("00 20 00 00 06 FF FF FF FF FF FF")) == bytes.fromhex(
        "F2 00 00 0E 43 60 33 00 20 00 00 06 FF FF FF FF FF FF 03 C9")
    # A positive status answer: 'P' 31 30, st0 '0' (channel empty), st1 '2' (enough cards), st2 '0' (bin not full)
    got = d.Parser().feed(bytes.fromhex("06 F2 00 00 06 50 31 30 30 32 30 03 94"))
    assert got[0] == d.ACK
    packet = got[1]
    assert isinstance(packet, d.Packet) and packet.head == "P" and (packet.cm, packet.pm) == (0x31, 0x30)
    assert packet.status == d.Status("empty", "ok", False)


def test_parser_survives_noise_and_bad_frames() -> None:
    rng = random.Random(11)
    good = d.frame(0x31, 0x30, b"012", head=b"P")
    parser, found = d.Parser(), 0
    for _ in range(2000):
        noise = bytes(rng.randrange(256) for _ in range(rng.randrange(12)))
        damaged = bytearray(good)
        if rng.random() < 0.3:
            damaged[rng.randrange(len(damaged))] ^= 1 << rng.randrange(8)
        for item in parser.feed(noise + bytes(damaged)):
            found += isinstance(item, d.Packet) and item == d.Packet("P", 0x31, 0x30, b"012")
    assert found >= 1300  # the undamaged ones (~70%) come out; nothing crashed, buffer stays bounded
    assert len(parser.buf) <= d.MAX_TEXT + 6


@pytest.fixture
def disp_sim() -> Iterator[DispenserSim]:
    s = DispenserSim(stacker=3, bin_capacity=2)
    yield s
    s.close()


def test_issue_writes_a_verified_grant_and_holds_the_card_at_the_gate(disp_sim: DispenserSim) -> None:
    disp = KeyCardDispenser(disp_sim.path, 9600, KEY)
    uid = disp.issue(GRANT)
    assert disp_sim.channel == "gate" and disp_sim.stacker == 2
    card = disp_sim.take()
    assert card is not None and card.uid.hex() == uid
    assert kc.decode(card.blocks[(1, 0)] + card.blocks[(1, 1)], card.uid, KEY) == ON_CARD
    # every command the host sent was a well-formed CRT-591 frame the unit acknowledged
    assert [c[:2] for c in disp_sim.commands[:3]] == [b"\x31\x30", b"\x32\x32", b"\x60\x30"]
    disp_sim.insert(card)  # check-out: the guest returns it
    assert disp.take_back(2.0) == ON_CARD
    assert disp_sim.bin == 1 and disp_sim.channel == "empty"


def test_jam_captures_the_card_and_empty_hopper_and_full_bin_are_named(disp_sim: DispenserSim) -> None:
    disp = KeyCardDispenser(disp_sim.path, 9600, KEY)
    disp_sim.stacker, disp_sim.jam_next = 10, True
    with pytest.raises(DeviceFault) as err:
        disp.issue(GRANT)
    assert err.value.code == "card_jam"
    assert disp_sim.bin == 1 and disp_sim.channel == "empty" and not disp_sim.issued  # never handed out
    disp_sim.fail_write = True
    with pytest.raises(DeviceFault) as err:
        disp.issue(GRANT)
    assert err.value.code == "write_failed" and disp_sim.bin == 2 and not disp_sim.issued
    disp_sim.fail_write, disp_sim.jam_next = False, True
    with pytest.raises(DeviceFault):  # the jammed card cannot be captured: the bin is full
        disp.issue(GRANT)
    assert disp.health() == "bin_full"
    disp_sim.stacker, disp_sim.bin, disp_sim.channel, disp_sim.card = 0, 0, "empty", None
    with pytest.raises(DeviceFault) as err:
        disp.issue(GRANT)
    assert err.value.code == "hopper_empty" and disp.health() == "hopper_empty"


def test_unplugged_dispenser_is_unavailable_then_works_again(disp_sim: DispenserSim) -> None:
    disp = KeyCardDispenser(disp_sim.path, 9600, KEY)
    disp_sim.silent = True
    with pytest.raises(DeviceUnavailable):
        disp.issue(GRANT)
    assert disp.health() == "unavailable"
    disp_sim.silent = False
    assert disp.issue(GRANT) and disp_sim.channel == "gate"


def test_a_foreign_or_altered_card_is_handed_back(disp_sim: DispenserSim) -> None:
    disp = KeyCardDispenser(disp_sim.path, 9600, KEY)
    disp.issue(GRANT)
    card = disp_sim.take()
    assert card is not None
    card.blocks[(1, 0)] = card.blocks[(1, 0)][:4] + b"9999    " + card.blocks[(1, 0)][12:]  # room changed
    disp_sim.insert(card)
    with pytest.raises(ValueError, match="does not check out"):
        disp.take_back(2.0)
    assert disp_sim.bin == 0 and disp_sim.issued[-1] is card  # ejected back to the guest
    assert disp.take_back(0.2) is None  # nobody inserts anything: no card, no error


def test_dispenser_resends_on_nak_and_ignores_a_late_answer() -> None:
    # A unit that NAKs the first copy of every command (a garbled line): the host sends again (§5.2 case 2).
    class Flaky(DispenserSim):
        def on_bytes(self, chunk: bytes) -> None:
            if chunk.startswith(b"\xf2") and not getattr(self, "nakked", False):
                self.nakked = True
                self.pty.write(bytes([d.NAK]))
                return
            self.nakked = False
            super().on_bytes(chunk)

    sim = Flaky()
    try:
        port = open_port(sim.path, 9600)
        unit = d.Crt591(port)
        assert unit.status() == d.Status("empty", "ok", False)
        assert sum(1 for c in sim.commands if c[:2] == b"\x31\x30") == 1  # executed once
        port.close()
    finally:
        sim.close()


# ---------------------------------------------------------------------------- printer

def test_receipt_bytes_through_the_escpos_dummy() -> None:
    dummy = Dummy()
    EscposPrinter(lambda: dummy, query_status=False).print_receipt(["Room 1208", "房间 1208"])
    out = dummy.output
    assert b"Room 1208\n" in out
    assert b"\x1c\x26" + "房间 1208".encode("gb18030") + b"\n\x1c\x2e" in out  # FS & … FS . Chinese mode
    assert out.rstrip(b"\x00").endswith(b"\x1dV\x00") or b"\x1dV" in out[-8:]  # cut at the end


@pytest.fixture
def printer_sim() -> Iterator[PrinterSim]:
    s = PrinterSim()
    yield s
    s.close()


def test_printer_paper_out_before_and_unplugged(printer_sim: PrinterSim) -> None:
    pr = EscposPrinter(make_escpos(PrinterConfig(kind="serial", port=printer_sim.path)))
    try:
        assert pr.health() == "ok"
        pr.print_receipt(["Room 1208"])
        wait_for(lambda: printer_sim.receipts, 5, "the receipt at the printer", every=0.02)
        assert "Room 1208" in printer_sim.receipts[0]
        printer_sim.paper = "low"
        assert pr.health() == "low"
        printer_sim.paper = "out"
        with pytest.raises(DeviceFault) as err:
            pr.print_receipt(["lost"])
        assert err.value.code == "paper_out" and len(printer_sim.receipts) == 1
        printer_sim.paper, printer_sim.silent = "ok", True
        with pytest.raises(DeviceUnavailable):
            pr.print_receipt(["nobody listens"])
        assert pr.health() == "unavailable"
    finally:
        pr.close()


# ---------------------------------------------------------------------------- payment

@pytest.fixture
def sandbox() -> Iterator[PaymentSandbox]:
    s = PaymentSandbox()
    yield s
    s.close()


def test_payment_is_idempotent_and_declines_are_clear(sandbox: PaymentSandbox) -> None:
    pay = HttpPayment(sandbox.url, timeout_s=2)
    first = pay.preauthorize(30000, "h/1", "s1/deposit")
    assert pay.preauthorize(30000, "h/1", "s1/deposit") == first  # a retry: same hold, not a second one
    assert sandbox.held() == 30000
    pay.capture(first, 4500, "s1/settle")
    pay.capture(first, 4500, "s1/settle")
    assert sandbox.preauths[first]["captured"] == 4500 and sandbox.held() == 0
    sandbox.mode = "decline"
    with pytest.raises(PaymentDeclined, match="declined"):
        pay.preauthorize(30000, "h/2", "s2/deposit")
    assert sandbox.held() == 0


def test_payment_without_an_answer_is_unknown_and_voided_by_key(sandbox: PaymentSandbox) -> None:
    pay = HttpPayment(sandbox.url, timeout_s=0.3)
    sandbox.mode = "hang"
    with pytest.raises(PaymentUnknown):
        pay.preauthorize(30000, "h/3", "s3/deposit")
    assert sandbox.held() == 30000  # the provider did hold the money
    pay.void(None, "s3/deposit")
    assert sandbox.held() == 0
    refused = HttpPayment("http://127.0.0.1:9", timeout_s=0.5)  # nothing listens: nothing happened
    with pytest.raises(DeviceUnavailable):
        refused.preauthorize(100, "h/4", "s4/deposit")


# ---------------------------------------------------------------------------- PMS

def test_sqlite_pms_assigns_each_room_once(tmp_path: Path) -> None:
    pms = SqlitePms(tmp_path / "pms.db")
    pms.add_room("1201", "deluxe", 12)
    pms.add_room("1101", "deluxe", 11, status="vacant_dirty")
    a = pms.add_booking("A1", "张伟", "138", "2026-01-01", "2026-01-03", "deluxe")
    pms.add_booking("A2", "李娜", "139", "2026-01-01", "2026-01-02", "deluxe")
    booking_a, booking_b = pms.find(confirmation="A1")[0], pms.find(name="李娜", phone="139")[0]
    assert booking_a.id == a and booking_a.nights == 2 and pms.find() == []
    room = pms.assign_room(booking_a)
    assert room == "1201"  # the dirty room on a lower floor is not given out
    stay = pms.check_in(booking_a, room, 1.0)
    with pytest.raises(NotFound):
        pms.assign_room(booking_b)
    pms.add_charge(stay, "Minibar", 4500)
    assert pms.bill(stay).total_cents == 4500 and pms.find(confirmation="A1") == []
    pms.check_out(stay, 2.0)
    with pytest.raises(NotFound):
        pms.bill(stay)
    pms.close()


# ---------------------------------------------------------------------------- ID card reader

def test_id_reader_hands_over_the_photo_in_memory() -> None:
    photo = id_photo("obama")
    assert photo[:2] == b"\xff\xd8" and len(photo) < idreader.MAX_LEN - 300
    sim = IdReaderSim()
    try:
        reader = SerialIdReader(sim.path, 115200)
        assert reader.read() is None
        sim.place(sample_card("张伟", "11010519491231002X", photo))
        guest = reader.read()
        assert guest is not None and guest.id_number == "11010519491231002X" and guest.photo == photo
        sim.place(sample_card("张伟", "110105194912310021"))  # wrong check digit
        with pytest.raises(DeviceFault, match="id_unreadable"):
            reader.read()
    finally:
        sim.close()


# ---------------------------------------------------------------------------- personal data

def test_key_file_is_created_0600_and_a_readable_one_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "kiosk" / "id.key"
    key = load_key("file", path)
    assert len(key) == 32 and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_key("file", path) == key
    os.chmod(path, 0o644)
    with pytest.raises(KeyFileError, match="0600"):
        load_key("file", path)
    with pytest.raises(KeyFileError, match="does not exist"):
        load_key("file", tmp_path / "none.key", create=False)


def test_vault_seal_and_mask() -> None:
    vault = Vault(os.urandom(32))
    blob = vault.encrypt("11010519491231002X", b"7")
    assert "11010519491231002X" not in blob and vault.decrypt(blob, b"7") == "11010519491231002X"
    with pytest.raises(ValueError):
        vault.decrypt(blob, b"8")  # bound to its stay
    hub = X25519PrivateKey.generate()
    public = hub.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    sealed = seal("11010519491231002X", public)
    assert open_sealed(sealed, hub) == "11010519491231002X"
    with pytest.raises(ValueError):
        open_sealed(sealed, X25519PrivateKey.generate())
    assert mask_id("610104199001011234") == "6101**********1234"


def test_key_card_grant_is_bound_to_the_card() -> None:
    data = kc.encode(GRANT, b"\x01\x02\x03\x04", KEY)
    assert len(data) == 32
    assert kc.decode(data, b"\x01\x02\x03\x04", KEY).room == "1208"
    with pytest.raises(ValueError):
        kc.decode(data, b"\x09\x02\x03\x04", KEY)  # copied onto another card
    with pytest.raises(ValueError):
        kc.decode(data, b"\x01\x02\x03\x04", b"x" * 32)  # another hotel's key


def test_sim_kiosk_prints_a_config_and_takes_commands(tmp_path: Path) -> None:
    import subprocess
    import sys

    script = "show\njam\nempty\npaper out\npayment hang\nunplug printer\nidcard\nshow\nbogus\nquit\n"
    out = subprocess.run([sys.executable, "-m", "edge_agent", "sim", "kiosk", "--seconds", "60"], input=script,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    config = text.split("# agent config using them:\n")[1].split("\ndispenser:")[0]
    (tmp_path / "kiosk.toml").write_text(config + "\n")
    check = subprocess.run([sys.executable, "-m", "edge_agent", "validate-config", str(tmp_path / "kiosk.toml")],
                           capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "dispenser: stacker 50, bin 0, channel empty; printer: paper ok" in text
    assert "dispenser: stacker 0" in text and "paper out" in text and "payment hang" in text
    assert "printer unplugged" in text and "ID card on the reader" in text and "unknown command: 'bogus'" in text
