"""Check-out steps: key card in → bill → settle from the deposit."""

from __future__ import annotations

from fastapi import APIRouter, Path, Request

from kiosk_ui.routers import ERRORS, SID, service
from kiosk_ui.schemas import SessionView

router = APIRouter(prefix="/api/sessions/{sid}", tags=["check-out"], responses=ERRORS)


@router.post("/card", response_model=SessionView,
             summary="Take the key card at the slot (waiting=true while none came)")
def card(request: Request, sid: str = Path(pattern=SID)) -> dict[str, object]:
    svc = service(request)
    got: list[bool] = []
    view = svc.view(svc.act(sid, lambda s: got.append(svc.read_card(s))))
    return {**view, "waiting": not (got and got[0])}


@router.post("/settle", response_model=SessionView, summary="Capture the bill from the deposit, release the rest")
def settle(request: Request, sid: str = Path(pattern=SID)) -> dict[str, object]:
    svc = service(request)
    return svc.view(svc.act(sid, svc.settle))
