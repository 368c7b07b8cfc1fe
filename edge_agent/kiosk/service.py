"""The kiosk's application service: drives the pure flow (flow.py) with the devices and services (ports.py)
and writes what the hub must know to the outbox.

One call per guest action; each returns at once with the session's new state (the UI polls the ID reader
and the card slot by calling again). Guarantees, on top of the flow's:
- a session is worked on by one call at a time (a double tap gets Busy, never a second card);
- every failure writes one `kiosk.alert` transaction (reason, step, compensation; no personal data);
- a deposit held when a session fails, is cancelled or times out before a card was issued is voided
  (by pre-authorisation id, or by idempotency key when the provider's answer was lost);
- `kiosk.registration` carries name, nationality, room, times and the ID number sealed to the hub's key;
  the clear number exists only in memory during the session.
Raised to the API: NotFound (unknown session), StepError, Busy.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any
from zoneinfo import ZoneInfo

from edge_agent.kiosk import DeviceFault, DeviceUnavailable, KioskError, NotFound, PaymentDeclined, PaymentUnknown
from edge_agent.kiosk import face as fc
from edge_agent.kiosk.flow import Deposit, Failure, Session, Step, StepError
from edge_agent.kiosk.guests import GuestStore
from edge_agent.kiosk.keycard import Grant
from edge_agent.kiosk.ports import Booking, Camera, Dispenser, IdReader, Payment, Pms, Printer
from edge_agent.kiosk.privacy import mask_id, seal
from edge_agent.kiosk.receipt import checkin_receipt, checkout_receipt
from edge_agent.records import DataClass

logger = logging.getLogger(__name__)


class Busy(KioskError):
    """Another call is working on this session."""


@dataclass
class Devices:
    pms: Pms
    payment: Payment
    dispenser: Dispenser
    printer: Printer
    idreader: IdReader
    camera: Camera


@dataclass(frozen=True)
class Policy:
    hotel: str
    timezone: str = "Asia/Shanghai"
    idle_s: float = 90
    deposit_cents: int = 30000
    currency: str = "CNY"
    face_tries: int = 3
    face_frames: int = 8
    retention_s: float = 30 * 86400
    card_wait_s: float = 1.0
    languages: tuple[str, ...] = ("zh-CN", "en")


class KioskService:
    def __init__(self, devices: Devices, policy: Policy, *, sink: Any, guests: GuestStore, hub_public: bytes,
                 matcher: Callable[[], fc.FaceMatcher], photos: fc.PhotoDecoder,
                 clock: Callable[[], float] = time.time) -> None:
        self.dev, self.policy, self.sink, self.guests = devices, policy, sink, guests
        self.hub_public, self._matcher_factory, self.photos, self.clock = hub_public, matcher, photos, clock
        self._matcher: fc.FaceMatcher | None = None
        self.sessions: dict[str, Session] = {}
        self._busy: dict[str, threading.Lock] = {}
        self.lock = threading.Lock()
        self.alerts = 0

    # ------------------------------------------------------------------ sessions

    def start(self, kind: str, lang: str | None = None) -> Session:
        self.expire()
        lang = lang if lang in self.policy.languages else self.policy.languages[0]
        s = Session(kind, self.clock(), lang)
        with self.lock:
            self.sessions[s.id] = s
            self._busy[s.id] = threading.Lock()
        return s

    def get(self, sid: str) -> Session:
        with self.lock:
            s = self.sessions.get(sid)
        if s is None:
            raise NotFound("no such session (it ended or timed out)")
        return s

    def act(self, sid: str, action: Callable[[Session], None]) -> Session:
        """Run one guest action on a session, alone; device errors end the session on the staff screen."""
        s = self.get(sid)
        lock = self._busy[sid]
        if not lock.acquire(blocking=False):
            raise Busy("this session is busy with the previous step")
        try:
            s.touch(self.clock())
            try:
                action(s)
            except (DeviceFault, DeviceUnavailable, PaymentDeclined, PaymentUnknown, NotFound) as err:
                self._fail(s, _reason(err), str(err))
            s.touch(self.clock())
            return s
        finally:
            lock.release()

    def set_lang(self, sid: str, lang: str) -> Session:
        if lang not in self.policy.languages:
            raise ValueError(f"language {lang!r} is not offered here")
        return self.act(sid, lambda s: setattr(s, "lang", lang))

    def cancel(self, sid: str, why: str = "cancelled") -> None:
        """The guest left (or the session timed out): release what is held, forget everything."""
        with self.lock:
            s = self.sessions.pop(sid, None)
            self._busy.pop(sid, None)
        if s is None:
            return
        if s.to_compensate():
            compensation = self._void(s)
            self._alert(s, Failure(why, s.step, compensation))
        logger.info("kiosk session %s ended at %s (%s)", sid[:8], s.step.value, why)

    def expire(self) -> int:
        """Wipe sessions idle past the limit (the welcome screen shows again); returns how many."""
        now = self.clock()
        with self.lock:
            idle = [sid for sid, s in self.sessions.items()
                    if s.expired(now, self.policy.idle_s) and not self._busy[sid].locked()]
        for sid in idle:
            self.cancel(sid, "idle_timeout")
        return len(idle)

    def purge(self) -> int:
        return self.guests.purge(self.clock(), self.policy.retention_s)

    # ------------------------------------------------------------------ check-in

    def _today(self) -> str:
        return dt.datetime.fromtimestamp(self.clock(), ZoneInfo(self.policy.timezone)).date().isoformat()

    def _arriving(self, found: list[Booking]) -> list[Booking]:
        today = self._today()
        return [b for b in found if b.arrival <= today < b.departure]

    def find_booking(self, s: Session, confirmation: str | None = None, name: str | None = None,
                     phone: str | None = None) -> None:
        s.at(Step.BOOKING)
        if confirmation:
            found = self.dev.pms.find(confirmation=confirmation)
        elif name and phone:
            found = self.dev.pms.find(name=name, phone=phone)
        else:
            raise ValueError("give a confirmation number, or a name and a phone number")
        found = self._arriving(found)
        if not found:
            self._fail(s, "no_booking")
            return
        s.booking = asdict(found[0])
        s.advance(Step.ID_CARD)

    def read_id(self, s: Session) -> bool:
        """Poll the ID reader once; False while no card is on it. At the booking step the card finds the
        booking (by the name on it); at the ID step it must match the booking's guest."""
        s.at(Step.BOOKING, Step.ID_CARD)
        try:
            guest = self.dev.idreader.read()
        except DeviceUnavailable as err:
            self._fail(s, "id_reader_unavailable", str(err))
            return True
        if guest is None:
            return False
        if guest.valid_to and guest.valid_to.isdigit() and guest.valid_to < self._today().replace("-", ""):
            self._fail(s, "id_expired")
            return True
        if s.step == Step.BOOKING:
            found = self._arriving(self.dev.pms.find(name=guest.name))
            if not found:
                self._fail(s, "no_booking")
                return True
            s.booking = asdict(found[0])
        elif s.booking is None or s.booking["guest_name"].strip() != guest.name.strip():
            self._fail(s, "id_mismatch")
            return True
        s.guest = guest
        s.advance(Step.FACE)
        return True

    def matcher(self) -> fc.FaceMatcher:
        if self._matcher is None:
            self._matcher = self._matcher_factory()
        return self._matcher

    def check_face(self, s: Session) -> None:
        s.at(Step.FACE)
        assert s.guest is not None
        try:
            photo = self.photos.decode(s.guest.photo)
        except fc.PhotoUndecodable:
            self._fail(s, "photo_undecodable")
            return
        m = self.matcher()
        try:
            verdict = m.verify(photo, self.dev.camera.frames(self.policy.face_frames))
        except fc.NoFace as err:
            if "frames" not in str(err):  # the ID photo itself shows no face
                self._fail(s, "photo_undecodable")
                return
            matched, s.message = False, "face_not_seen"
        else:
            matched = verdict.ok
            s.message = None if matched else ("turn_head" if not verdict.live else "face_no_match")
            logger.info("kiosk face check %s: score %.3f live %s turn %.3f", s.id[:8], verdict.score,
                        verdict.live, verdict.turn)
        if matched:
            self._assign_room(s)
        elif not s.face_attempt(False, self.policy.face_tries):
            self._fail(s, "face_mismatch")

    def _assign_room(self, s: Session) -> None:
        s.face_attempt(True, self.policy.face_tries)
        assert s.booking is not None
        try:
            s.room = self.dev.pms.assign_room(Booking(**s.booking))
        except NotFound:
            self._fail(s, "no_room")
            return
        s.advance(Step.ROOM)

    def confirm_room(self, s: Session) -> None:
        s.at(Step.ROOM)
        if self.policy.deposit_cents <= 0:
            s.deposit = Deposit.NOT_DUE
            s.advance(Step.KEY_CARD)
        else:
            s.advance(Step.DEPOSIT)

    def take_deposit(self, s: Session) -> None:
        s.at(Step.DEPOSIT)
        key = f"{s.id}/deposit"
        try:
            s.auth_id = self.dev.payment.preauthorize(self.policy.deposit_cents, f"{self.policy.hotel}/{s.id}", key)
        except PaymentUnknown as err:
            s.deposit = Deposit.HELD  # perhaps: void whatever the key created
            self._fail(s, "payment_timeout", str(err))
            return
        except DeviceUnavailable as err:
            self._fail(s, "payment_unavailable", str(err))
            return
        s.deposit, s.deposit_cents = Deposit.HELD, self.policy.deposit_cents
        s.advance(Step.KEY_CARD)

    def issue_card(self, s: Session) -> None:
        s.at(Step.KEY_CARD)
        if not s.can_issue_card():
            raise StepError("the deposit step is not complete")
        assert s.booking is not None and s.room is not None and s.guest is not None
        booking, now = Booking(**s.booking), self.clock()
        s.stay = self.dev.pms.check_in(booking, s.room, now)
        until = dt.datetime.combine(dt.date.fromisoformat(booking.departure), dt.time(12),
                                    ZoneInfo(self.policy.timezone)).timestamp()
        try:
            s.card_uid = self.dev.dispenser.issue(Grant(s.room, s.stay, int(now), int(until)))
        except (DeviceFault, DeviceUnavailable):
            self.dev.pms.cancel_check_in(s.stay)
            s.stay = None
            raise
        g = s.guest
        self.guests.add(s.stay, s.room, g.name, g.id_number, g.nationality, now, booking.departure, s.auth_id,
                        s.deposit_cents)
        self.sink.put(DataClass.TRANSACTION, "kiosk.registration", {
            "hotel": self.policy.hotel, "stay": s.stay, "room": s.room, "name": g.name,
            "id_type": "CN-resident", "id_sealed": seal(g.id_number, self.hub_public),
            "id_masked": mask_id(g.id_number),
            "nationality": g.nationality, "checkin_at": _iso(now, self.policy.timezone),
            "departure": booking.departure, "source": "kiosk"})
        logger.info("kiosk check-in %s: room %s, stay %d, guest %s", s.id[:8], s.room, s.stay, mask_id(g.id_number))
        s.advance(Step.RECEIPT)

    def print_receipt(self, s: Session, skip: bool = False) -> None:
        s.at(Step.RECEIPT)
        if not skip:
            lines = checkin_receipt(s, self.policy) if s.kind == "checkin" else checkout_receipt(s, self.policy)
            try:
                self.dev.printer.print_receipt(lines)
            except (DeviceFault, DeviceUnavailable) as err:
                s.notice = "receipt_failed"
                self._alert(s, Failure(_reason(err), Step.RECEIPT), str(err))
        s.advance(Step.DONE)
        s.guest = None  # the clear ID number and the photo are no longer needed

    # ------------------------------------------------------------------ check-out

    def read_card(self, s: Session) -> bool:
        """Take the guest's key card if one is at the slot; False while none came."""
        s.at(Step.CARD)
        try:
            grant = self.dev.dispenser.take_back(self.policy.card_wait_s)
        except ValueError:
            self._fail(s, "card_unreadable")
            return True
        if grant is None:
            return False
        try:
            bill = self.dev.pms.bill(grant.stay)
        except NotFound:
            self._fail(s, "no_stay")
            return True
        s.stay, s.room = grant.stay, grant.room
        s.auth_id, s.deposit_cents = self.guests.deposit(grant.stay)
        s.deposit = Deposit.HELD if s.auth_id else Deposit.NOT_DUE
        s.bill = {"lines": [{"item": i, "cents": c} for i, c in bill.lines], "total_cents": bill.total_cents}
        s.advance(Step.BILL)
        return True

    def settle(self, s: Session) -> None:
        s.at(Step.BILL)
        assert s.stay is not None
        capture, due = s.settlement()
        if s.auth_id:
            key = f"{s.id}/settle"
            if capture > 0:
                self.dev.payment.capture(s.auth_id, capture, key)
                s.deposit = Deposit.CAPTURED
            else:
                self.dev.payment.void(s.auth_id, key)
                s.deposit = Deposit.VOIDED
        if due > 0:
            s.bill = {**(s.bill or {}), "captured_cents": capture, "due_cents": due}
            self._fail(s, "balance_due")
            return
        now = self.clock()
        self.dev.pms.check_out(s.stay, now)
        self.guests.checked_out(s.stay, now)
        self.sink.put(DataClass.TRANSACTION, "kiosk.departure", {
            "hotel": self.policy.hotel, "stay": s.stay, "room": s.room,
            "checkout_at": _iso(now, self.policy.timezone), "source": "kiosk"})
        s.bill = {**(s.bill or {}), "captured_cents": capture, "released_cents": s.deposit_cents - capture}
        s.advance(Step.RECEIPT)

    # ------------------------------------------------------------------ failures

    def _void(self, s: Session) -> str:
        """Release a held deposit; the compensation as said to the guest."""
        try:
            self.dev.payment.void(s.auth_id, f"{s.id}/deposit")
        except KioskError as err:
            logger.error("kiosk session %s: deposit could not be voided: %s", s.id[:8], err)
            return "void_pending"
        s.deposit = Deposit.VOIDED
        return "deposit_voided"

    def _fail(self, s: Session, reason: str, detail: str = "") -> None:
        compensation = self._void(s) if s.to_compensate() else None
        failure = s.fail(reason, compensation)
        self._alert(s, failure, detail)

    def _alert(self, s: Session, failure: Failure, detail: str = "") -> None:
        self.alerts += 1
        body = {"hotel": self.policy.hotel, "session": s.id, "kind": s.kind, "step": failure.step.value,
                "reason": failure.reason, "compensation": failure.compensation, "room": s.room,
                "detail": detail[:160], "at": _iso(self.clock(), self.policy.timezone), "action": "call_staff"}
        logger.warning("kiosk session %s: %s at %s, staff called%s", s.id[:8], failure.reason, failure.step.value,
                       f" ({failure.compensation})" if failure.compensation else "")
        self.sink.put(DataClass.TRANSACTION, "kiosk.alert", body)

    # ------------------------------------------------------------------ what the screen shows

    def view(self, s: Session) -> dict[str, Any]:
        data: dict[str, Any] = {"room": s.room, "deposit_cents": self.policy.deposit_cents,
                                "currency": self.policy.currency, "notice": s.notice,
                                "tries_left": max(0, self.policy.face_tries - s.face_tries)}
        if s.booking:
            b = s.booking
            data["booking"] = {k: b[k] for k in ("confirmation", "guest_name", "arrival", "departure", "nights",
                                                  "room_type")}
        if s.guest:
            data["guest"] = {"name": s.guest.name, "id_masked": mask_id(s.guest.id_number)}
        if s.bill:
            data["bill"] = s.bill
        return {"id": s.id, "kind": s.kind, "step": s.step.value, "steps": [x.value for x in s.steps],
                "lang": s.lang, "message": s.message, "data": data,
                "failure": None if s.failure is None else {"reason": s.failure.reason, "step": s.failure.step.value,
                                                           "compensation": s.failure.compensation}}


def _reason(err: Exception) -> str:
    if isinstance(err, DeviceFault):
        return err.code
    if isinstance(err, PaymentDeclined):
        return "payment_declined"
    if isinstance(err, PaymentUnknown):
        return "payment_timeout"
    if isinstance(err, NotFound):
        return "not_found"
    return "device_unavailable"


def _iso(ts: float, tz: str) -> str:
    return dt.datetime.fromtimestamp(ts, ZoneInfo(tz)).isoformat(timespec="seconds")
