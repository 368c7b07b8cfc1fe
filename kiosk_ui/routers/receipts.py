"""Receipts: print (or skip) the check-in or check-out receipt."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Path, Request

from kiosk_ui.routers import ERRORS, SID, step
from kiosk_ui.schemas import ReceiptChoice, SessionView

router = APIRouter(prefix="/api/sessions/{sid}", tags=["receipts"], responses=ERRORS)


@router.post("/receipt", response_model=SessionView, summary="Print the receipt (or skip it)")
def receipt(body: ReceiptChoice, request: Request, sid: str = Path(pattern=SID)) -> dict[str, Any]:
    return step(request, sid, lambda svc, s: svc.print_receipt(s, body.skip))
