"""The kiosk's seams: one small protocol per device or service, so the flow can run on the real ones, the
simulators (edge_agent/kiosk/sim.py, real wire protocols) or the project's fakes at the hardware edge.

Every method raises only the kiosk's errors (edge_agent.kiosk): DeviceUnavailable, DeviceFault(code),
PaymentDeclined, PaymentUnknown, NotFound.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from edge_agent.kiosk.flow import Guest
from edge_agent.kiosk.keycard import Grant


@dataclass(frozen=True)
class Booking:
    id: int
    confirmation: str
    guest_name: str
    phone: str
    arrival: str  # YYYY-MM-DD, hotel time
    departure: str
    room_type: str
    nights: int
    prepaid_cents: int = 0


@dataclass(frozen=True)
class Bill:
    stay: int
    room: str
    lines: list[tuple[str, int]] = field(default_factory=list)  # (item, cents)

    @property
    def total_cents(self) -> int:
        return sum(c for _, c in self.lines)


class Pms(Protocol):
    def find(self, *, confirmation: str | None = None, name: str | None = None, phone: str | None = None,
             arrival: str | None = None) -> list[Booking]: ...
    def assign_room(self, booking: Booking) -> str: ...
    def check_in(self, booking: Booking, room: str, now: float) -> int: ...
    def cancel_check_in(self, stay: int) -> None: ...
    def bill(self, stay: int) -> Bill: ...
    def check_out(self, stay: int, now: float) -> None: ...
    def health(self) -> str: ...


class Payment(Protocol):
    def preauthorize(self, amount_cents: int, reference: str, key: str) -> str: ...
    def capture(self, auth_id: str, amount_cents: int, key: str) -> None: ...
    def void(self, auth_id: str | None, key: str) -> None: ...
    def health(self) -> str: ...


class Dispenser(Protocol):
    def issue(self, grant: Grant) -> str: ...
    def take_back(self, wait_s: float) -> Grant | None: ...
    def health(self) -> str: ...


class Printer(Protocol):
    def print_receipt(self, lines: list[str]) -> None: ...
    def health(self) -> str: ...


class IdReader(Protocol):
    def read(self) -> Guest | None: ...
    def health(self) -> str: ...


class Camera(Protocol):
    def frames(self, n: int) -> list[Any]: ...
    def health(self) -> str: ...
