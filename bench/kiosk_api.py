"""Kiosk API latency and first paint, on the simulated kiosk served by the real role (uvicorn).

p95_ms: the check-in API calls a screen makes (start a session, look up the booking, poll the ID reader,
switch language, read the session, end it) from 20 guests' sessions at once, each a keep-alive client
like the kiosk's browser, measured at the client; the kiosk runs in its own process, as on the device.
Shown beside it: the same calls from one session alone (the naive measurement that hides queueing).
Device-bound steps are timed apart (face check: two models on 8 frames; key card: serial round trips), as
they wait on hardware, not on the API.
first_paint_ms: first-contentful-paint of the welcome page in Debian's chromium, fresh context, median of 5.

Ends with: RESULT p95_ms=.. first_paint_ms=.. sessions=20
"""

from __future__ import annotations

import multiprocessing
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402

from edge_agent.kiosk.demo import CONFIRMATION, Rig, serve  # noqa: E402
from edge_agent.store import Outbox, StorePolicy  # noqa: E402

SESSIONS, ROUNDS = 20, 15
CHROMIUM = "/usr/bin/chromium"


def guest(url: str, times: list[float], rounds: int, barrier: threading.Barrier | None) -> None:
    with httpx.Client(base_url=url, timeout=30) as c:
        if barrier:
            barrier.wait()
        for _ in range(rounds):
            def call(method: str, path: str, body: object = None) -> dict[str, object]:
                t = time.perf_counter()
                r = c.request(method, path, json=body)
                times.append((time.perf_counter() - t) * 1000)
                r.raise_for_status()
                return r.json() if r.content else {}

            sid = call("POST", "/api/sessions", {"kind": "checkin", "lang": "zh-CN"})["id"]
            call("POST", f"/api/sessions/{sid}/booking", {"confirmation": CONFIRMATION})
            call("POST", f"/api/sessions/{sid}/id-card")  # no card on the reader: waiting
            call("PUT", f"/api/sessions/{sid}/lang", {"lang": "en"})
            call("GET", f"/api/sessions/{sid}")
            call("DELETE", f"/api/sessions/{sid}")


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[94]


def first_paint(url: str) -> float | None:
    if not Path(CHROMIUM).exists():
        return None
    from playwright.sync_api import sync_playwright

    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
             "--disable-component-update", "--disable-sync"]
    paints = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=flags)
        for _ in range(5):
            ctx = browser.new_context(bypass_csp=True)  # to read the paint timing with evaluate()
            page = ctx.new_page()
            page.goto(url)
            page.wait_for_selector('body[data-screen="welcome"]', state="attached")
            fcp = page.evaluate("performance.getEntriesByName('first-contentful-paint')[0]?.startTime ?? -1")
            if fcp > 0:
                paints.append(float(fcp))
            ctx.close()
        browser.close()
    return statistics.median(paints) if paints else None


def device_steps(place_card: Callable[[], object], url: str) -> tuple[float, float]:
    """One check-in through the device-bound steps: face check and key card, in ms."""
    with httpx.Client(base_url=url, timeout=60) as c:
        sid = c.post("/api/sessions", json={"kind": "checkin"}).json()["id"]
        c.post(f"/api/sessions/{sid}/booking", json={"confirmation": CONFIRMATION})
        place_card()
        while c.post(f"/api/sessions/{sid}/id-card").json()["waiting"]:
            time.sleep(0.05)
        t = time.perf_counter()
        assert c.post(f"/api/sessions/{sid}/face").json()["step"] == "room"
        face = (time.perf_counter() - t) * 1000
        c.post(f"/api/sessions/{sid}/room")
        c.post(f"/api/sessions/{sid}/deposit")
        t = time.perf_counter()
        assert c.post(f"/api/sessions/{sid}/key-card").json()["step"] == "receipt"
        return face, (time.perf_counter() - t) * 1000


def server(folder: str, conn: Connection) -> None:
    """The kiosk in its own process, as on the device (the browser is another process): its URL goes back
    on `conn`; 'card' lays the guest's ID card on the reader; 'stop' ends it."""
    rig = Rig(Path(folder) / "kiosk")
    outbox = Outbox(Path(folder) / "outbox.db", StorePolicy())
    try:
        with serve(rig, outbox) as role:
            conn.send(role.url)
            while (msg := conn.recv()) != "stop":
                if msg == "card":
                    rig.place_card()
                conn.send("ok")
    finally:
        outbox.close()
        rig.close()


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        parent, child = multiprocessing.Pipe()
        proc = multiprocessing.get_context("spawn").Process(target=server, args=(tmp, child), daemon=True)
        proc.start()
        url = parent.recv()
        try:
            guest(url, [], 2, None)  # warm-up
            alone: list[float] = []
            guest(url, alone, ROUNDS, None)
            times: list[float] = []
            barrier = threading.Barrier(SESSIONS)
            threads = [threading.Thread(target=guest, args=(url, times, ROUNDS, barrier)) for _ in range(SESSIONS)]
            t0 = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            wall = time.perf_counter() - t0
            face_ms, card_ms = device_steps(lambda: (parent.send("card"), parent.recv()), url)
            paint = first_paint(url)
        finally:
            parent.send("stop")
            proc.join(20)
    print(f"{SESSIONS} sessions × {ROUNDS} check-in screens: {len(times)} calls in {wall:.1f} s "
          f"({len(times) / wall:.0f}/s); p50 {statistics.median(times):.1f} ms, p95 {p95(times):.1f} ms, "
          f"max {max(times):.1f} ms")
    print(f"one session alone (the naive figure): p50 {statistics.median(alone):.1f} ms, p95 {p95(alone):.1f} ms")
    print(f"device-bound steps, one guest: face check {face_ms:.0f} ms, key card {card_ms:.0f} ms")
    print(f"first contentful paint of the welcome page: {paint if paint is None else round(paint)} ms")
    print(f"RESULT p95_ms={p95(times):.1f} first_paint_ms={-1 if paint is None else round(paint)} "
          f"sessions={SESSIONS} p95_alone_ms={p95(alone):.1f} face_ms={face_ms:.0f} card_ms={card_ms:.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
