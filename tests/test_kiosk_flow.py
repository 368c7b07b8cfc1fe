"""Check-in and check-out: the pure flow (no I/O, time passed in) and the service driving every simulated
device, with a real SQLite outbox as the sink. Every failure path ends on the staff screen with one alert
record; a deposit is never left held without a card, and no card is issued before the deposit step."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edge_agent.kiosk.demo import CONFIRMATION, GUEST_NAME, PHONE, Rig
from edge_agent.kiosk.devices import SerialIdReader
from edge_agent.kiosk.flow import Deposit, Session, Step, StepError
from edge_agent.kiosk.privacy import open_sealed
from edge_agent.kiosk.service import Busy, KioskService
from edge_agent.kiosk.sim import FrameCamera, live_frames, load_faces
from edge_agent.records import DataClass
from edge_agent.store import Outbox, StorePolicy
from tests.helpers import outbox_records, wait_for

# ---------------------------------------------------------------------------- pure flow


def test_flow_keeps_order_and_refuses_a_card_before_payment() -> None:
    s = Session("checkin", started=100.0)
    assert s.step == Step.BOOKING and s.steps[-1] == Step.DONE
    with pytest.raises(StepError):
        s.at(Step.KEY_CARD)
    s.advance(Step.KEY_CARD)  # even forced ahead, the card rule holds
    assert not s.can_issue_card()
    s.deposit = Deposit.HELD
    assert s.can_issue_card() and s.to_compensate()
    s.card_uid = "01020304"
    assert not s.to_compensate()
    with pytest.raises(StepError):
        s.advance(Step.ID_CARD)  # never backwards
    s.fail("paper_out")
    with pytest.raises(StepError):
        s.advance()
    with pytest.raises(ValueError):
        Session("lunch", started=0)


def test_flow_face_tries_idle_and_settlement() -> None:
    s = Session("checkin", started=0.0)
    assert s.face_attempt(False, 3) and s.face_attempt(False, 3) and not s.face_attempt(False, 3)
    s.touch(50.0)
    assert not s.expired(139.0, 90) and s.expired(140.5, 90)
    out = Session("checkout", started=0.0)
    out.deposit_cents, out.bill = 30000, {"total_cents": 4500}
    assert out.settlement() == (4500, 0)
    out.bill = {"total_cents": 45000}
    assert out.settlement() == (30000, 15000)


# ---------------------------------------------------------------------------- the service with simulators


class Clock:
    def __init__(self) -> None:
        self.now = 1_780_000_000.0  # a fixed day; the rig books arrivals for it

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def kiosk(tmp_path: Path) -> Iterator[tuple[Rig, KioskService, Outbox, Clock]]:
    clock = Clock()
    rig = Rig(tmp_path / "kiosk", clock=clock, payment_timeout_s=0.3)
    outbox = Outbox(tmp_path / "outbox.db", StorePolicy())
    svc = rig.service(outbox)
    yield rig, svc, outbox, clock
    outbox.close()
    svc.guests.close()
    rig.close()


def alerts(outbox: Outbox) -> list[dict[str, Any]]:
    return outbox_records(outbox, DataClass.TRANSACTION, "kiosk.alert")


def check_in_to(svc: KioskService, rig: Rig, upto: Step, **card: Any) -> Session:
    """Walk a check-in up to (not through) `upto`."""
    s = svc.start("checkin", "en")
    order = [Step.BOOKING, Step.ID_CARD, Step.FACE, Step.ROOM, Step.DEPOSIT, Step.KEY_CARD, Step.RECEIPT]
    actions = {Step.BOOKING: lambda s: svc.find_booking(s, CONFIRMATION),
               Step.ID_CARD: lambda s: (rig.place_card(**card), svc.read_id(s)),
               Step.FACE: svc.check_face, Step.ROOM: svc.confirm_room, Step.DEPOSIT: svc.take_deposit,
               Step.KEY_CARD: svc.issue_card, Step.RECEIPT: lambda s: svc.print_receipt(s)}
    for step in order[:order.index(upto)]:
        svc.act(s.id, actions[step])
        assert s.step != Step.STAFF, s.failure
    assert s.step == upto
    return s


def test_happy_check_in_and_check_out(kiosk: tuple[Rig, KioskService, Outbox, Clock]) -> None:
    rig, svc, outbox, clock = kiosk
    s = check_in_to(svc, rig, Step.RECEIPT)
    view = svc.view(s)
    assert view["data"]["guest"]["id_masked"] == rig.guest_id[:4] + "*" * 10 + rig.guest_id[-4:]
    svc.act(s.id, lambda s: svc.print_receipt(s))
    assert s.step == Step.DONE and s.guest is None and rig.payment.held() == 30000
    wait_for(lambda: rig.printer.receipts, 5, "the receipt")
    assert "1201" in rig.printer.receipts[-1] and rig.guest_id not in rig.printer.receipts[-1]
    reg = outbox_records(outbox, DataClass.TRANSACTION, "kiosk.registration")
    assert len(reg) == 1 and reg[0]["room"] == "1201" and reg[0]["name"] == GUEST_NAME
    assert open_sealed(reg[0]["id_sealed"], rig.hub_key) == rig.guest_id  # the hub can read it, nobody else
    assert rig.guest_id not in json.dumps(reg)
    card = rig.dispenser.take()
    assert card is not None
    rig.pms.add_charge(s.stay, "Minibar", 4500)
    clock.now += 86400
    out = svc.start("checkout")
    svc.act(out.id, lambda o: svc.read_card(o))
    assert out.step == Step.CARD  # nothing inserted yet: waiting
    rig.dispenser.insert(card)
    svc.act(out.id, lambda o: svc.read_card(o))
    assert out.step == Step.BILL and out.bill == {"lines": [{"item": "Minibar", "cents": 4500}], "total_cents": 4500}
    svc.act(out.id, svc.settle)
    svc.act(out.id, lambda o: svc.print_receipt(o))
    assert out.step == Step.DONE and rig.dispenser.bin == 1
    assert [p["status"] for p in rig.payment.preauths.values()] == ["captured"] and rig.payment.held() == 0
    dep = outbox_records(outbox, DataClass.TRANSACTION, "kiosk.departure")
    assert dep[0]["stay"] == s.stay and alerts(outbox) == []


def test_booking_by_name_phone_and_by_id_card(kiosk: tuple[Rig, KioskService, Outbox, Clock]) -> None:
    rig, svc, outbox, _ = kiosk
    s = svc.start("checkin")
    svc.act(s.id, lambda s: svc.find_booking(s, name=GUEST_NAME, phone=PHONE))
    assert s.step == Step.ID_CARD and s.booking and s.booking["confirmation"] == CONFIRMATION
    t = svc.start("checkin")
    svc.act(t.id, lambda t: svc.read_id(t))
    assert t.step == Step.BOOKING  # no card yet
    rig.place_card()
    svc.act(t.id, lambda t: svc.read_id(t))
    assert t.step == Step.FACE and t.booking and t.booking["confirmation"] == CONFIRMATION
    with pytest.raises(ValueError):
        svc.find_booking(svc.start("checkin"))


@pytest.mark.parametrize("case, reason", [
    ("no_booking", "no_booking"), ("id_mismatch", "id_mismatch"), ("face", "face_mismatch"),
    ("photo", "photo_undecodable"), ("declined", "payment_declined"), ("timeout", "payment_timeout"),
    ("jam", "card_jam"), ("empty", "hopper_empty"), ("unplugged", "device_unavailable"),
    ("camera_unplugged", "device_unavailable"), ("no_room", "no_room"),
    ("reader_unplugged", "id_reader_unavailable"), ("payment_gone", "payment_unavailable"),
])
def test_every_failure_ends_at_staff_with_one_alert(kiosk: tuple[Rig, KioskService, Outbox, Clock], case: str,
                                                    reason: str) -> None:
    rig, svc, outbox, _ = kiosk
    if case == "no_booking":
        s = svc.start("checkin")
        svc.act(s.id, lambda s: svc.find_booking(s, "NOPE42"))
    elif case == "reader_unplugged":
        s = check_in_to(svc, rig, Step.ID_CARD)
        svc.dev.idreader = SerialIdReader(str(rig.folder / "no-such-tty"), 115200)
        svc.act(s.id, lambda s: svc.read_id(s))
    elif case == "id_mismatch":
        s = check_in_to(svc, rig, Step.ID_CARD)
        rig.place_card(name="李娜", face="rose_leslie_img1")
        svc.act(s.id, lambda s: svc.read_id(s))
    elif case in ("face", "photo", "camera_unplugged"):
        s = check_in_to(svc, rig, Step.FACE, **({"face": "rose_leslie_img1"} if case == "face" else
                                                {"photo": b"\x57\x4c" + bytes(1022)} if case == "photo" else {}))
        rig.camera.unplugged = case == "camera_unplugged"
        for attempt in range(3):
            svc.act(s.id, svc.check_face)
            if s.step == Step.STAFF:
                break
            assert s.message == "face_no_match" and svc.view(s)["data"]["tries_left"] == 2 - attempt
        assert rig.payment.held() == 0
    elif case == "no_room":
        for n in range(1, 6):
            rig.pms.add_room(f"120{n}", "deluxe", 12, status="occupied")
        s = check_in_to(svc, rig, Step.FACE)
        svc.act(s.id, svc.check_face)
    else:
        deposit_step = case in ("declined", "timeout", "payment_gone")
        s = check_in_to(svc, rig, Step.DEPOSIT if deposit_step else Step.KEY_CARD)
        rig.payment.mode = {"declined": "decline", "timeout": "hang"}.get(case, "approve")
        if case == "payment_gone":
            rig.payment.close()  # the provider's address refuses connections: nothing can have been held
        rig.dispenser.jam_next = case == "jam"
        rig.dispenser.stacker = 0 if case == "empty" else rig.dispenser.stacker
        rig.dispenser.silent = case == "unplugged"
        svc.act(s.id, svc.take_deposit if deposit_step else svc.issue_card)
    assert s.step == Step.STAFF and s.failure is not None and s.failure.reason == reason
    got = alerts(outbox)
    assert len(got) == 1 and got[0]["reason"] == reason and got[0]["action"] == "call_staff"
    # money: nothing stays held without a card; where a hold existed the guest is told it was released
    assert rig.payment.held() == 0 and not rig.dispenser.issued
    if case in ("timeout", "jam", "empty", "unplugged"):
        assert s.failure.compensation == "deposit_voided" and got[0]["compensation"] == "deposit_voided"
    assert outbox_records(outbox, DataClass.TRANSACTION, "kiosk.registration") == []
    if case in ("jam", "empty", "unplugged"):  # the room goes back to the pool
        assert rig.pms.find(confirmation=CONFIRMATION) and rig.pms.assign_room(rig.pms.find(
            confirmation=CONFIRMATION)[0]) == "1201"


def test_face_check_needs_a_live_head_turn(kiosk: tuple[Rig, KioskService, Outbox, Clock]) -> None:
    rig, svc, outbox, _ = kiosk
    s = check_in_to(svc, rig, Step.FACE)
    rig.camera.images = load_faces("obama")  # the same still photo held up to the camera
    svc.act(s.id, svc.check_face)
    assert s.step == Step.FACE and s.message == "turn_head"
    rig.camera.images = live_frames("obama")
    svc.act(s.id, svc.check_face)
    assert s.step == Step.ROOM and s.room == "1201"


def test_receipt_failures_are_noticed_not_fatal(kiosk: tuple[Rig, KioskService, Outbox, Clock]) -> None:
    rig, svc, outbox, _ = kiosk
    s = check_in_to(svc, rig, Step.RECEIPT)
    rig.printer.paper = "out"
    svc.act(s.id, lambda s: svc.print_receipt(s))
    assert s.step == Step.DONE and s.notice == "receipt_failed"
    assert [a["reason"] for a in alerts(outbox)] == ["paper_out"]
    assert rig.payment.held() == 30000 and rig.dispenser.channel == "gate"  # the stay itself stands


def test_idle_and_cancelled_sessions_release_the_deposit(kiosk: tuple[Rig, KioskService, Outbox, Clock]) -> None:
    rig, svc, outbox, clock = kiosk
    s = check_in_to(svc, rig, Step.KEY_CARD)
    assert rig.payment.held() == 30000
    clock.now += 89
    assert svc.expire() == 0
    clock.now += 2
    assert svc.expire() == 1 and s.id not in svc.sessions
    assert rig.payment.held() == 0
    got = alerts(outbox)
    assert got[-1]["reason"] == "idle_timeout" and got[-1]["compensation"] == "deposit_voided"
    t = check_in_to(svc, rig, Step.KEY_CARD)
    svc.cancel(t.id)
    assert rig.payment.held() == 0 and alerts(outbox)[-1]["reason"] == "cancelled"


def test_a_double_tap_cannot_issue_two_cards(kiosk: tuple[Rig, KioskService, Outbox, Clock]) -> None:
    rig, svc, outbox, _ = kiosk
    s = check_in_to(svc, rig, Step.KEY_CARD)

    def tap_again(s: Session) -> None:
        with pytest.raises(Busy):
            svc.act(s.id, svc.issue_card)
        svc.issue_card(s)

    svc.act(s.id, tap_again)
    with pytest.raises(StepError):
        svc.act(s.id, svc.issue_card)
    assert rig.dispenser.stacker == 49


def test_balance_over_the_deposit_goes_to_the_desk(kiosk: tuple[Rig, KioskService, Outbox, Clock]) -> None:
    rig, svc, outbox, _ = kiosk
    s = check_in_to(svc, rig, Step.RECEIPT)
    card = rig.dispenser.take()
    assert card is not None and s.stay is not None
    rig.pms.add_charge(s.stay, "Spa", 50000)
    out = svc.start("checkout")
    rig.dispenser.insert(card)
    svc.act(out.id, lambda o: svc.read_card(o))
    svc.act(out.id, svc.settle)
    assert out.step == Step.STAFF and out.failure and out.failure.reason == "balance_due"
    assert out.bill and out.bill["due_cents"] == 20000 and rig.payment.held() == 0


def test_camera_with_two_people_is_not_a_match(kiosk: tuple[Rig, KioskService, Outbox, Clock]) -> None:
    rig, svc, outbox, _ = kiosk
    rig.camera = FrameCamera(load_faces("two_people"))
    svc.dev.camera = rig.camera
    s = check_in_to(svc, rig, Step.FACE)
    svc.act(s.id, svc.check_face)
    assert s.step == Step.FACE and s.message == "face_not_seen"
