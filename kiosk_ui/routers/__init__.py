"""One router per resource; each reaches the KioskService through `service(request)`."""

from __future__ import annotations

from fastapi import Request

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
