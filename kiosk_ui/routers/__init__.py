"""One router per resource; each reaches the KioskService through `service(request)`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Path, Request

from edge_agent.kiosk.flow import Session
from edge_agent.kiosk.service import KioskService

SID = r"^[0-9a-f]{32}$"
ERRORS: dict[int | str, dict[str, object]] = {
    404: {"description": "No such session (ended or timed out)."},
    409: {"description": "Not at this step, or busy with the previous one."},
    413: {"description": "Body too large."},
    422: {"description": "Malformed request."},
}


def service(request: Request) -> KioskService:
    svc: KioskService = request.app.state.service
    return svc


def step(request: Request, sid: str, action: Callable[[KioskService, Session], Any]) -> dict[str, Any]:
    """Run one guest action on the session and answer its new view; `waiting` is true when the action
    returned False (a device had nothing yet: no card on the reader, none at the slot)."""
    svc = service(request)
    got: list[Any] = []
    view = svc.view(svc.act(sid, lambda s: got.append(action(svc, s))))
    return {**view, "waiting": got == [False]}


def add_step(router: APIRouter, path: str, summary: str, action: Callable[[KioskService, Session], Any]) -> None:
    """A body-less POST step on `router` (the session's screens: face, room, deposit, key card, ...)."""
    from kiosk_ui.schemas import SessionView

    def endpoint(request: Request, sid: str = Path(pattern=SID)) -> dict[str, Any]:
        return step(request, sid, action)

    endpoint.__name__ = path.strip("/").replace("-", "_")
    router.add_api_route(path, endpoint, methods=["POST"], response_model=SessionView, summary=summary)
