"""The kiosk's HTTP API: bad input gets a clear 4xx, the OpenAPI schema holds under schemathesis (no 5xx),
and a whole check-in and check-out through the real role (uvicorn under the agent's producer interface)
leaves no full ID number in logs, responses, the outbox or any SQLite file, and no image file anywhere."""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from edge_agent.kiosk.demo import CONFIRMATION, Rig, serve
from edge_agent.kiosk.role import KioskRole
from edge_agent.records import DataClass
from edge_agent.store import Outbox, StorePolicy
from tests.helpers import outbox_records, wait_for


def test_bad_requests_get_clear_4xx(role: tuple[Rig, KioskRole, Outbox, str]) -> None:
    url = role[3]
    health = role[1].commands()["kiosk.health"]({})  # the hub's downlink command
    assert health["dispenser"] == "ok" and health["printer"] == "ok" and health["pms"] == "ok"
    with httpx.Client(base_url=url, timeout=10) as client:
        r = client.post("/api/sessions", content=b"{not json", headers={"Content-Type": "application/json"})
        assert r.status_code == 422 and "JSON" in r.json()["detail"]
        r = client.post("/api/sessions", json={"kind": "checkin", "colour": "red"})
        assert r.status_code == 422 and "colour" in r.json()["detail"]
        r = client.post("/api/sessions", json={"kind": "lunch"})
        assert r.status_code == 422 and "kind" in r.json()["detail"]
        r = client.post("/api/sessions", content=b"{" + b" " * 5000 + b"}",
                        headers={"Content-Type": "application/json"})
        assert r.status_code == 413 and "4096" in r.json()["detail"]
        sid = client.post("/api/sessions", json={"kind": "checkin"}).json()["id"]
        r = client.post(f"/api/sessions/{sid}/booking", json={"confirmation": "x" * 200})
        assert r.status_code == 422 and "confirmation" in r.json()["detail"]
        r = client.post(f"/api/sessions/{sid}/booking", json={"confirmation": "<script>"})
        assert r.status_code == 422
        r = client.post(f"/api/sessions/{sid}/booking", json={})
        assert r.status_code == 422 and "confirmation number" in r.json()["detail"]
        r = client.post(f"/api/sessions/{sid}/key-card")
        assert r.status_code == 409 and "booking" in r.json()["detail"]
        r = client.post("/api/sessions/..%2F..%2Fetc%2Fpasswd/face")
        assert r.status_code in (404, 422)
        r = client.post(f"/api/sessions/{'0' * 32}/face")
        assert r.status_code == 404 and "no such session" in r.json()["detail"]
        r = client.put(f"/api/sessions/{sid}/lang", json={"lang": "fr"})
        assert r.status_code == 422
        assert client.get("/api/i18n/fr").status_code == 422
        page = client.get("/")
        assert page.status_code == 200 and "default-src 'self'" in page.headers["content-security-policy"]
        assert "//" not in page.text.replace("<!doctype html>", "")  # no CDN: every URL is local


def test_openapi_documents_every_route(role: tuple[Rig, KioskRole, Outbox, str]) -> None:
    schema = httpx.get(role[3] + "/openapi.json").json()
    paths = schema["paths"]
    for route in ("/api/sessions", "/api/sessions/{sid}", "/api/sessions/{sid}/booking", "/api/sessions/{sid}/id-card",
                  "/api/sessions/{sid}/face", "/api/sessions/{sid}/deposit", "/api/sessions/{sid}/key-card",
                  "/api/sessions/{sid}/card", "/api/sessions/{sid}/settle", "/api/sessions/{sid}/receipt",
                  "/api/health"):
        assert route in paths
        for op in paths[route].values():
            assert op.get("summary"), route


def test_schemathesis_finds_no_server_error(role: tuple[Rig, KioskRole, Outbox, str]) -> None:
    from schemathesis.checks import not_a_server_error

    schema = schemathesis.openapi.from_url(role[3] + "/openapi.json")
    failures: list[str] = []
    cases = 0
    for result in schema.get_all_operations():
        operation = result.ok()

        @settings(max_examples=25, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        def run(case: Any) -> None:
            nonlocal cases
            cases += 1
            response = case.call()
            try:
                case.validate_response(response, checks=[not_a_server_error])
            except AssertionError as err:
                failures.append(f"{case.operation.label}: {err}")

        given(operation.as_strategy())(run)()
    assert cases > 200
    assert failures == []


# ---------------------------------------------------------------------------- the role, end to end


@pytest.fixture
def role(tmp_path: Path) -> Iterator[tuple[Rig, KioskRole, Outbox, str]]:
    rig = Rig(tmp_path / "kiosk", payment_timeout_s=0.5)
    outbox = Outbox(tmp_path / "outbox.db", StorePolicy())
    with serve(rig, outbox) as r:
        yield rig, r, outbox, r.url
    outbox.close()
    rig.close()


def image_files(*roots: Path, since: float) -> list[str]:
    """Image files (by their first bytes) changed since `since` under the roots. Other people's pytest runs
    on this shared machine write into their own pytest-of-* folders: those are skipped, ours is a root."""
    magic = (b"\xff\xd8\xff", b"\x89PNG", b"BM", b"GIF8", b"RIFF")
    found = []
    for root in roots:
        for dirpath, dirs, files in os.walk(root):
            dirs[:] = [d for d in dirs if not d.startswith("pytest-of-")]
            for name in files:
                p = Path(dirpath) / name
                try:
                    if p.stat().st_mtime >= since and p.read_bytes()[:4].startswith(magic):
                        found.append(str(p))
                except OSError:
                    continue
    return found


def test_no_full_id_number_anywhere_and_no_image_written(role: tuple[Rig, KioskRole, Outbox, str], tmp_path: Path,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    rig, r, outbox, url = role
    started = time.time()
    caplog.set_level(logging.DEBUG)
    bodies: list[str] = []

    def call(client: httpx.Client, method: str, path: str, body: Any = None) -> dict[str, Any]:
        resp = client.request(method, path, json=body)
        bodies.append(resp.text)
        assert resp.status_code < 400, resp.text
        return dict(resp.json()) if resp.content else {}

    with httpx.Client(base_url=url, timeout=30) as client:
        s = call(client, "POST", "/api/sessions", {"kind": "checkin", "lang": "en"})
        sid = s["id"]
        call(client, "POST", f"/api/sessions/{sid}/booking", {"confirmation": CONFIRMATION})
        rig.place_card()
        view = wait_for(lambda: (v := call(client, "POST", f"/api/sessions/{sid}/id-card")) and not v["waiting"] and v,
                        10, "the ID card to be read")
        assert view["step"] == "face" and view["data"]["guest"]["id_masked"].startswith(rig.guest_id[:4] + "*")
        for step in ("face", "room", "deposit", "key-card"):
            view = call(client, "POST", f"/api/sessions/{sid}/{step}")
        assert view["step"] == "receipt", view
        call(client, "POST", f"/api/sessions/{sid}/receipt", {"skip": False})
        call(client, "GET", "/api/health")
        card = rig.dispenser.take()
        assert card is not None
        out = call(client, "POST", "/api/sessions", {"kind": "checkout"})["id"]
        rig.dispenser.insert(card)
        wait_for(lambda: not call(client, "POST", f"/api/sessions/{out}/card")["waiting"], 10, "the key card")
        call(client, "POST", f"/api/sessions/{out}/settle")
        call(client, "POST", f"/api/sessions/{out}/receipt", {"skip": True})
        # a failing check-in too: its alert goes through the same channels
        bad = call(client, "POST", "/api/sessions", {"kind": "checkin"})["id"]
        call(client, "POST", f"/api/sessions/{bad}/booking", {"confirmation": CONFIRMATION.replace("1", "2", 1)})
    reg = wait_for(lambda: outbox_records(outbox, DataClass.TRANSACTION, "kiosk.registration"), 5, "registration")
    assert reg[0]["id_masked"] == rig.guest_id[:4] + "**********" + rig.guest_id[-4:]
    assert outbox_records(outbox, DataClass.TRANSACTION, "kiosk.departure")
    assert outbox_records(outbox, DataClass.TRANSACTION, "kiosk.alert")
    number = rig.guest_id
    logs = "\n".join(rec.getMessage() for rec in caplog.records)
    assert "kiosk check-in" in logs and number[:4] + "*" in logs  # logged, masked
    assert number not in logs and number not in "".join(bodies)
    for f in [p for p in tmp_path.rglob("*") if p.is_file()]:  # outbox, its WAL, guests, PMS, key
        data = f.read_bytes()
        for form in (number.encode(), number.encode("utf-16-le"), number.lower().encode()):
            assert form not in data, f"{f} holds the ID number"
    assert r.service is not None and r.service.guests.count() == 1  # the front desk's copy is there, encrypted
    assert image_files(tmp_path, Path(tempfile.gettempdir()), Path.cwd(), since=started) == []


def test_kiosk_example_config_validates_and_builds(tmp_path: Path) -> None:
    from edge_agent.core.ports import Context
    from edge_agent.registry import REGISTRY, load_config
    from edge_agent.store import Outbox

    cfg = load_config(Path(__file__).resolve().parents[1] / "edge_agent" / "examples" / "hotel-kiosk.toml")
    kiosk = [p for p in cfg.producers if p.type == "kiosk"]
    assert cfg.device.role == "kiosk" and len(kiosk) == 1 and kiosk[0].host == "127.0.0.1"
    with Outbox(tmp_path / "o.db") as ob:
        assert REGISTRY.build(kiosk[0], Context(ob)).name == kiosk[0].name
    assert json.loads(kiosk[0].model_dump_json())["printer"]["kind"] == "serial"


def test_message_catalogs_are_complete() -> None:
    import re

    root = Path(__file__).resolve().parents[1]
    catalogs = {lang: json.loads((root / "kiosk_ui" / "static" / "i18n" / f"{lang}.json").read_text("utf-8"))
                for lang in ("zh-CN", "en")}
    assert set(catalogs["zh-CN"]) == set(catalogs["en"]), set(catalogs["zh-CN"]) ^ set(catalogs["en"])
    assert all(v.strip() for cat in catalogs.values() for v in cat.values())
    static = root / "kiosk_ui" / "static"
    used = set(re.findall(r'data-i18n="([^"]+)"', (static / "index.html").read_text()))
    used |= set(re.findall(r'\bt\("([a-z_]+\.[a-z_]+)"[,)]', (static / "app.js").read_text()))
    # codes the service can put on a screen: failure reasons, compensations, retry messages, notices, steps
    source = "".join(p.read_text() for p in (root / "edge_agent" / "kiosk").glob("*.py"))
    used |= {f"reason.{c}" for c in re.findall(r'_fail\(s, "([a-z_]+)"', source)}
    used |= {f"reason.{c}" for c in re.findall(r'DeviceFault\("([a-z_]+)"', source)}
    reason_fn = (root / "edge_agent" / "kiosk" / "service.py").read_text().split("def _reason")[1].split("\ndef ")[0]
    used |= {f"reason.{c}" for c in re.findall(r'return "([a-z_]+)"', reason_fn)}
    used |= {f"message.{c}" for c in ("face_no_match", "turn_head", "face_not_seen")}
    used |= {f"compensation.{c}" for c in re.findall(r'return "(deposit_voided|void_pending)"', source)}
    used |= {"notice.receipt_failed"} | {f"steps.{s}" for s in ("booking", "id_card", "face", "room", "deposit",
                                                                  "key_card", "card", "bill", "receipt", "done")}
    assert len(used) > 80
    for lang, catalog in catalogs.items():
        missing = sorted(used - set(catalog))
        assert not missing, f"{lang} catalog lacks {missing}"


def test_every_kiosk_config_field_has_a_description() -> None:
    from pydantic import BaseModel

    from edge_agent.kiosk import config

    missing = [f"{name}.{f}" for name in dir(config) if isinstance(getattr(config, name), type)
               and issubclass(getattr(config, name), BaseModel) and getattr(config, name).__module__ == config.__name__
               for f, info in getattr(config, name).model_fields.items() if not info.description]
    assert missing == []


@pytest.mark.broker
def test_agent_runs_the_kiosk_and_the_registration_reaches_the_hub(tmp_path: Path, broker: Any) -> None:
    """`edge-agent run` with a kiosk producer on simulated devices: the UI answers on 127.0.0.1, a check-in
    through it lands at the hub once as kiosk.registration, and only the hub's key opens the ID number."""
    from edge_agent.kiosk.privacy import open_sealed
    from edge_agent.kiosk.simcli import camera_clip, snippet
    from tests.helpers import agent_proc, free_port, hub_proc, hub_records

    rig = Rig(tmp_path / "kiosk", payment_timeout_s=2)
    port = free_port()
    config = snippet(rig, camera_clip(tmp_path)).replace("port = 8080", f"port = {port}")
    config = config.replace('[store]', f'[mqtt]\nurl = "{broker.url}"\n[sync]\nack_timeout_s = 2\nbackoff_min_s = 0.2\n'
                            'backoff_max_s = 1\n[store]')
    (tmp_path / "agent.toml").write_text(config + "\n")
    hub_db = tmp_path / "hub.db"
    hub = hub_proc(broker, str(hub_db), tmp_path)
    agent = agent_proc(tmp_path / "agent.toml", tmp_path)
    url = f"http://127.0.0.1:{port}"
    try:
        def up() -> bool:
            try:
                return httpx.get(url + "/api/ui", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(up, 60, "the kiosk UI under the agent")
        with httpx.Client(base_url=url, timeout=30) as c:
            sid = c.post("/api/sessions", json={"kind": "checkin"}).json()["id"]
            c.post(f"/api/sessions/{sid}/booking", json={"confirmation": CONFIRMATION})
            rig.place_card()
            wait_for(lambda: not c.post(f"/api/sessions/{sid}/id-card").json()["waiting"], 20, "the ID card")
            for step in ("face", "room", "deposit", "key-card"):
                view = c.post(f"/api/sessions/{sid}/{step}").json()
            assert view["step"] == "receipt", view
        got = wait_for(lambda: hub_records(hub_db, "kiosk.registration"), 60, "the registration at the hub")
        assert len(got) == 1 and got[0]["room"] == "1201"
        assert open_sealed(got[0]["id_sealed"], rig.hub_key) == rig.guest_id
        assert rig.guest_id not in (tmp_path / "agent.log").read_text()
    finally:
        agent.terminate()
        hub.terminate()
        rig.close()
