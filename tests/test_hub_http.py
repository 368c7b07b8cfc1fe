"""The hub's status endpoint (issue 10): loopback unless a token is set, the token checked, conflicts an
alarm in /metrics, refused messages in /rejections. A real HTTP server on a free port, a real SQLite file."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from edge_agent.records import DataClass
from edge_agent.sync.envelope import Batch
from hub.cli import serve_http
from hub.db import SqliteBackend
from hub.ingest import HubStats
from tests.helpers import free_port

E = 1_800_000_000_000_000


def get(url: str, token: str | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:  # noqa: S310 - a loopback URL the test built
            return r.status, r.read()
    except urllib.error.HTTPError as err:
        err.close()
        return err.code, b""


@pytest.fixture
def db(tmp_path: Path) -> str:
    path = str(tmp_path / "hub.db")
    b = SqliteBackend(path)
    one = Batch("gate-1", "westlake", DataClass.TRANSACTION, "b", E, 1, [E + 1], [1.0], ["k"], ['{"n":1}'], [])
    b.ingest([one], [])
    b.ingest([Batch(**{**one.__dict__, "body": ['{"n":"other"}']})], [])  # a conflict: an alarm
    b.reject({("gate-x", "westlake", "unregistered"): (4, 1.0, 2.0, "westlake/gate-x is not a registered device")})
    b.close()
    return path


def test_the_endpoint_refuses_to_listen_beyond_loopback_without_a_token(db: str) -> None:
    with pytest.raises(ValueError, match="without a token"):
        serve_http(db, f"0.0.0.0:{free_port()}")
    server = serve_http(db, f"127.0.0.1:{free_port()}")
    try:
        status, body = get(f"http://127.0.0.1:{server.server_address[1]}/devices")
        assert status == 200 and json.loads(body)[0]["conflicts"] == 1
    finally:
        server.shutdown()
        server.server_close()


def test_with_a_token_every_route_but_healthz_asks_for_it(db: str) -> None:
    stats = HubStats(rejected=4)
    server = serve_http(db, f"0.0.0.0:{free_port()}", token="t0ken", stats=stats)
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        assert get(f"{base}/healthz")[0] == 200
        for path in ("/devices", "/metrics", "/rejections"):
            assert get(base + path)[0] == 401
            assert get(base + path, "wrong")[0] == 401
            assert get(base + path, "t0ken")[0] == 200
        metrics = get(f"{base}/metrics", "t0ken")[1].decode()
        assert "venue_hub_conflict_alarm 1" in metrics and 'venue_hub_conflicts{device="gate-1"} 1' in metrics
        assert "venue_hub_worker_rejected_total 4" in metrics
        [r] = json.loads(get(f"{base}/rejections", "t0ken")[1])
        assert (r["device"], r["reason"], r["count"]) == ("gate-x", "unregistered", 4)
    finally:
        server.shutdown()
        server.server_close()
