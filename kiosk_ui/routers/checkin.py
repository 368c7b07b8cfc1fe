"""Check-in steps: booking → ID card → face → room → deposit → key card."""

from __future__ import annotations

from fastapi import APIRouter, Path, Request

from kiosk_ui.routers import ERRORS, SID, service
from kiosk_ui.schemas import BookingQuery, SessionView

router = APIRouter(prefix="/api/sessions/{sid}", tags=["check-in"], responses=ERRORS)


@router.post("/booking", response_model=SessionView, summary="Find the booking by confirmation number or name+phone")
def booking(body: BookingQuery, request: Request, sid: str = Path(pattern=SID)) -> dict[str, object]:
    svc = service(request)
    return svc.view(svc.act(sid, lambda s: svc.find_booking(s, body.confirmation, body.name, body.phone)))


@router.post("/id-card", response_model=SessionView,
             summary="Read the ID card once (waiting=true while none is on the reader)")
def id_card(request: Request, sid: str = Path(pattern=SID)) -> dict[str, object]:
    svc = service(request)
    got: list[bool] = []
    view = svc.view(svc.act(sid, lambda s: got.append(svc.read_id(s))))
    return {**view, "waiting": not (got and got[0])}


@router.post("/face", response_model=SessionView, summary="Check the live face against the ID photo")
def face(request: Request, sid: str = Path(pattern=SID)) -> dict[str, object]:
    svc = service(request)
    return svc.view(svc.act(sid, svc.check_face))


@router.post("/room", response_model=SessionView, summary="Accept the room assigned")
def room(request: Request, sid: str = Path(pattern=SID)) -> dict[str, object]:
    svc = service(request)
    return svc.view(svc.act(sid, svc.confirm_room))


@router.post("/deposit", response_model=SessionView, summary="Pre-authorise the deposit on the payment terminal")
def deposit(request: Request, sid: str = Path(pattern=SID)) -> dict[str, object]:
    svc = service(request)
    return svc.view(svc.act(sid, svc.take_deposit))


@router.post("/key-card", response_model=SessionView, summary="Check in and dispense the encoded key card")
def key_card(request: Request, sid: str = Path(pattern=SID)) -> dict[str, object]:
    svc = service(request)
    return svc.view(svc.act(sid, svc.issue_card))
