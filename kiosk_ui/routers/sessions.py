"""Sessions: start, look at, change language, end (a guest who walks away ends by timeout)."""

from __future__ import annotations

from fastapi import APIRouter, Path, Request, Response

from kiosk_ui.routers import ERRORS, SID, service
from kiosk_ui.schemas import Lang, NewSession, SessionView

router = APIRouter(prefix="/api/sessions", tags=["sessions"], responses=ERRORS)


@router.post("", status_code=201, response_model=SessionView, summary="Start a check-in or check-out")
def start(body: NewSession, request: Request) -> dict[str, object]:
    svc = service(request)
    return svc.view(svc.start(body.kind, body.lang))


@router.get("/{sid}", response_model=SessionView, summary="The session's current screen")
def get(request: Request, sid: str = Path(pattern=SID)) -> dict[str, object]:
    svc = service(request)
    svc.expire()
    return svc.view(svc.get(sid))


@router.put("/{sid}/lang", response_model=SessionView, summary="Switch the screen language")
def lang(body: Lang, request: Request, sid: str = Path(pattern=SID)) -> dict[str, object]:
    svc = service(request)
    return svc.view(svc.set_lang(sid, body.lang))


@router.delete("/{sid}", status_code=204, summary="End the session (cancel, idle); a held deposit is released")
def end(request: Request, sid: str = Path(pattern=SID)) -> Response:
    service(request).cancel(sid)
    return Response(status_code=204)
