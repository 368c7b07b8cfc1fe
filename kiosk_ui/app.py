"""`create_app(service)`: the kiosk's FastAPI application.

Routes: /api/sessions… (one router per resource: sessions, checkin, checkout, receipts, i18n, health), the
touch UI as local static files at / (no CDN: the kiosk works offline) and the OpenAPI schema at
/openapi.json. Request bodies over 4 KiB are refused with 413 before they are read; every error answers
JSON {"detail": …} with a 4xx status; pages carry a strict Content-Security-Policy (own origin only).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from edge_agent.kiosk import NotFound
from edge_agent.kiosk.flow import StepError
from edge_agent.kiosk.service import Busy, KioskService
from kiosk_ui.routers import checkin, checkout, health, i18n, receipts, sessions

STATIC = Path(__file__).resolve().parent / "static"
MAX_BODY = 4096
CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; "
       "frame-ancestors 'none'; base-uri 'none'; form-action 'none'")


def create_app(service: KioskService, *, idle_s: float | None = None) -> FastAPI:
    app = FastAPI(title="Hotel self-check-in kiosk", version="1.0",
                  description="Check-in: booking → ID card → face check → room → deposit → key card → receipt. "
                  "Check-out: key card → bill → settle → receipt. Every failure ends on the staff screen.")
    app.state.service = service
    app.state.idle_s = idle_s if idle_s is not None else service.policy.idle_s
    for module in (sessions, checkin, checkout, receipts, i18n, health):
        app.include_router(module.router)

    @app.middleware("http")
    async def limits(request: Request, call_next: Any) -> Any:
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY):
            return JSONResponse({"detail": f"request body over {MAX_BODY} bytes"}, status_code=413)
        if request.method in ("POST", "PUT") and length is None and "chunked" in request.headers.get(
                "transfer-encoding", ""):
            return JSONResponse({"detail": "chunked request bodies are not accepted"}, status_code=411)
        response = await call_next(request)
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Cache-Control"] = "no-store"
        return response

    @app.exception_handler(NotFound)
    async def not_found(request: Request, err: NotFound) -> JSONResponse:
        return JSONResponse({"detail": str(err)}, status_code=404)

    @app.exception_handler(StepError)
    async def wrong_step(request: Request, err: StepError) -> JSONResponse:
        return JSONResponse({"detail": str(err)}, status_code=409)

    @app.exception_handler(Busy)
    async def busy(request: Request, err: Busy) -> JSONResponse:
        return JSONResponse({"detail": str(err)}, status_code=409)

    @app.exception_handler(ValueError)
    async def bad_value(request: Request, err: ValueError) -> JSONResponse:
        return JSONResponse({"detail": str(err)}, status_code=422)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, err: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'] if p != 'body') or 'body'}: {e['msg']}"
                             for e in err.errors()[:5])
        return JSONResponse({"detail": problems or "invalid request"}, status_code=422)

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app
