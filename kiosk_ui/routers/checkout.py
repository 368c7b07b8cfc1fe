"""Check-out steps: key card in → bill → settle from the deposit."""

from __future__ import annotations

from fastapi import APIRouter

from kiosk_ui.routers import ERRORS, add_step

router = APIRouter(prefix="/api/sessions/{sid}", tags=["check-out"], responses=ERRORS)

add_step(router, "/card", "Take the key card at the slot (waiting=true while none came)",
         lambda svc, s: svc.read_card(s))
add_step(router, "/settle", "Capture the bill from the deposit, release the rest", lambda svc, s: svc.settle(s))
