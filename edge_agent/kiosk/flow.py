"""The check-in / check-out state machine: pure (no I/O), time passed in by the caller.

Check-in:  booking → id_card → face → room → deposit → key_card → receipt → done
Check-out: card → bill (settled from the deposit) → receipt → done
Any step may end in `staff` (a failure: reason, and what was done to compensate). Guarantees enforced
here, whatever the caller does: the key card step refuses to run until the deposit is held (or none is
due); a deposit held when the session fails or is abandoned before a card was issued is reported by
`to_compensate()` so the caller voids it; a session idle longer than its limit is `expired`.

Raised: StepError (a step out of order or after the end: the API answers 409).
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass, field
from typing import Any


class Step(str, enum.Enum):
    BOOKING = "booking"
    ID_CARD = "id_card"
    FACE = "face"
    ROOM = "room"
    DEPOSIT = "deposit"
    KEY_CARD = "key_card"
    CARD = "card"
    BILL = "bill"
    RECEIPT = "receipt"
    DONE = "done"
    STAFF = "staff"


CHECKIN = (Step.BOOKING, Step.ID_CARD, Step.FACE, Step.ROOM, Step.DEPOSIT, Step.KEY_CARD, Step.RECEIPT, Step.DONE)
CHECKOUT = (Step.CARD, Step.BILL, Step.RECEIPT, Step.DONE)
FINAL = (Step.DONE, Step.STAFF)


class Deposit(str, enum.Enum):
    NONE = "none"  # not asked yet
    NOT_DUE = "not_due"
    HELD = "held"
    CAPTURED = "captured"
    VOIDED = "voided"


class StepError(Exception):
    """The session is not at the step asked for."""


@dataclass
class Guest:
    """Who the ID card says the guest is. Lives in memory only, for the length of the session."""

    name: str
    id_number: str
    nationality: str
    sex: str = ""
    birth: str = ""
    valid_to: str = ""
    photo: bytes = field(default=b"", repr=False)


@dataclass
class Failure:
    reason: str  # stable code: no_booking, id_mismatch, face_mismatch, payment_declined, card_jam, ...
    step: Step
    compensation: str | None = None  # e.g. deposit_voided


@dataclass
class Session:
    kind: str  # "checkin" | "checkout"
    started: float
    lang: str = "zh-CN"
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    step: Step = Step.BOOKING
    last_active: float = 0.0
    booking: dict[str, Any] | None = None
    guest: Guest | None = None
    face_tries: int = 0
    room: str | None = None
    stay: int | None = None
    deposit: Deposit = Deposit.NONE
    deposit_cents: int = 0
    auth_id: str | None = None
    card_uid: str | None = None
    bill: dict[str, Any] | None = None
    failure: Failure | None = None
    notice: str | None = None  # a non-fatal problem shown on the last screen (receipt not printed)
    message: str | None = None  # the last step's feedback (face not matched: try again)

    def __post_init__(self) -> None:
        if self.kind not in ("checkin", "checkout"):
            raise ValueError(f"unknown session kind {self.kind!r}")
        self.step = CHECKIN[0] if self.kind == "checkin" else CHECKOUT[0]
        self.last_active = self.started

    @property
    def steps(self) -> tuple[Step, ...]:
        return CHECKIN if self.kind == "checkin" else CHECKOUT

    def touch(self, now: float) -> None:
        self.last_active = now

    def expired(self, now: float, idle_s: float) -> bool:
        return now - self.last_active > idle_s

    def at(self, *steps: Step) -> None:
        """StepError unless the session is at one of `steps`."""
        if self.step not in steps:
            raise StepError(f"session is at {self.step.value}, not {'/'.join(s.value for s in steps)}")

    def advance(self, to: Step | None = None) -> None:
        """Next step in order (or `to`, which must lie ahead)."""
        if self.step in FINAL:
            raise StepError(f"session already ended at {self.step.value}")
        order = self.steps
        nxt = order[order.index(self.step) + 1] if to is None else to
        if order.index(nxt) <= order.index(self.step):
            raise StepError(f"cannot go back from {self.step.value} to {nxt.value}")
        self.step, self.message = nxt, None

    def fail(self, reason: str, compensation: str | None = None) -> Failure:
        """End on the staff screen; returns the failure (for the alert record)."""
        self.failure = Failure(reason, self.step, compensation)
        self.step, self.message = Step.STAFF, None
        return self.failure

    # ------------------------------------------------------------------ rules

    def can_issue_card(self) -> bool:
        """The payment step is complete: a deposit held, or none due."""
        return self.step == Step.KEY_CARD and self.deposit in (Deposit.HELD, Deposit.NOT_DUE)

    def to_compensate(self) -> bool:
        """A deposit is held but no card was issued: it must be voided."""
        return self.kind == "checkin" and self.deposit == Deposit.HELD and self.card_uid is None

    def face_attempt(self, matched: bool, max_tries: int) -> bool:
        """Count one face check; True when the guest may try again."""
        self.face_tries += 1
        if matched:
            return False
        return self.face_tries < max_tries

    def settlement(self) -> tuple[int, int]:
        """(amount to capture from the deposit, balance still due) for the bill."""
        total = int((self.bill or {}).get("total_cents", 0))
        capture = min(total, self.deposit_cents)
        return capture, total - capture
