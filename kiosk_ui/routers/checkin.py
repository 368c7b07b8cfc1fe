"""Check-in steps: booking → ID card → face → room → deposit → key card."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Path, Request

from kiosk_ui.routers import ERRORS, SID, add_step, step
from kiosk_ui.schemas import BookingQuery, SessionView

router = APIRouter(prefix="/api/sessions/{sid}", tags=["check-in"], responses=ERRORS)


@router.post("/booking", response_model=SessionView, summary="Find the booking by confirmation number or name+phone")
def booking(body: BookingQuery, request: Request, sid: str = Path(pattern=SID)) -> dict[str, Any]:
    return step(request, sid, lambda svc, s: svc.find_booking(s, body.confirmation, body.name, body.phone))


add_step(router, "/id-card", "Read the ID card once (waiting=true while none is on the reader)",
         lambda svc, s: svc.read_id(s))
add_step(router, "/face", "Check the live face against the ID photo", lambda svc, s: svc.check_face(s))
add_step(router, "/room", "Accept the room assigned", lambda svc, s: svc.confirm_room(s))
add_step(router, "/deposit", "Pre-authorise the deposit on the payment terminal", lambda svc, s: svc.take_deposit(s))
add_step(router, "/key-card", "Check in and dispense the encoded key card", lambda svc, s: svc.issue_card(s))
