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


SECURITY_HEADERS = [(b"content-security-policy", CSP.encode()), (b"x-content-type-options", b"nosniff"),
                    (b"cache-control", b"no-store")]


class Limits:
    """Plain ASGI middleware (no per-request task like BaseHTTPMiddleware): refuses bodies over MAX_BODY
    (413) or of unknown length (411) before the app reads them, and adds the security headers."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        length = headers.get(b"content-length")
        problem = None
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY):
            problem = 413, f"request body over {MAX_BODY} bytes"
        elif length is None and b"chunked" in headers.get(b"transfer-encoding", b""):
            problem = 411, "request bodies need a Content-Length"
        if problem:
            await JSONResponse({"detail": problem[1]}, status_code=problem[0])(scope, receive, send)
            return

        async def with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        await self.app(scope, receive, with_headers)


def create_app(service: KioskService, *, idle_s: float | None = None) -> FastAPI:
    app = FastAPI(title="Hotel self-check-in kiosk", version="1.0",
                  description="Check-in: booking → ID card → face check → room → deposit → key card → receipt. "
                  "Check-out: key card → bill → settle → receipt. Every failure ends on the staff screen.")
    app.state.service = service
    app.state.idle_s = idle_s if idle_s is not None else service.policy.idle_s
    for module in (sessions, checkin, checkout, receipts, i18n, health):
        app.include_router(module.router)

    app.add_middleware(Limits)

    def answer(status: int) -> Any:
        async def handler(request: Request, err: Exception) -> JSONResponse:
            return JSONResponse({"detail": str(err)}, status_code=status)
        return handler

    for error, status in ((NotFound, 404), (StepError, 409), (Busy, 409), (ValueError, 422)):
        app.add_exception_handler(error, answer(status))

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
