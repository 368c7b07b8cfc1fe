"""Device health for the staff and the hub: each device's state in one word."""

from __future__ import annotations

from fastapi import APIRouter, Request

from kiosk_ui.routers import service

router = APIRouter(prefix="/api", tags=["health"])


@router.get("/health", summary="State of each device (ok, low, unavailable, paper_out, hopper_empty, ...)")
def health(request: Request) -> dict[str, str]:
    dev = service(request).dev
    return {"pms": dev.pms.health(), "payment": dev.payment.health(), "dispenser": dev.dispenser.health(),
            "printer": dev.printer.health(), "idreader": dev.idreader.health(), "camera": dev.camera.health()}
