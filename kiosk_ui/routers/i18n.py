"""Message catalogs (zh-CN, en) and the UI settings the page needs."""

from __future__ import annotations

import json
from functools import cache
from typing import Literal

from fastapi import APIRouter, Request

from kiosk_ui.routers import service

router = APIRouter(prefix="/api", tags=["ui"])
LANGS = ("zh-CN", "en")


@cache
def catalog(lang: str) -> dict[str, str]:
    from kiosk_ui.app import STATIC

    data: dict[str, str] = json.loads((STATIC / "i18n" / f"{lang}.json").read_text(encoding="utf-8"))
    return data


@router.get("/i18n/{lang}", summary="Message catalog of one language")
def messages(lang: Literal["zh-CN", "en"]) -> dict[str, str]:
    return catalog(lang)


@router.get("/ui", summary="Languages offered and the idle timeout")
def ui(request: Request) -> dict[str, object]:
    svc = service(request)
    return {"languages": list(svc.policy.languages), "idle_s": request.app.state.idle_s,
            "currency": svc.policy.currency}
