"""Tell the hub something as the device itself, over mutual TLS, and wait for its answer.

The device publishes `{"id", "cmd", "ok", "result"}` on its own `result` topic (the only place, besides
`up/` and `state`, the broker lets it write) and waits for the claim service's answer on its own
`cmd/provision`. Used to register a certificate issued offline and to report a self-test.
Raises StepFailed when the broker refuses, or no answer comes in time.
"""

from __future__ import annotations

import json
import threading
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from provisioning import StepFailed
from provisioning.broker import PREFIX


def call_hub(url: str, site: str, device: str, tls: tuple[Path, Path, Path], cmd: str, ok: bool,
             result: dict[str, Any], timeout_s: float = 20.0, prefix: str = PREFIX) -> dict[str, Any]:
    """Publish one report and return the hub's `args` (tls = (ca, cert, key))."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    base = f"{prefix}/{site}/{device}"
    rid = uuid.uuid4().hex
    got: dict[str, Any] = {}
    done = threading.Event()

    def on_connect(c: mqtt.Client, u: Any, f: Any, rc: Any, p: Any) -> None:
        if rc.is_failure:
            got["error"] = f"broker refused {device}: {rc}"
            done.set()
        else:
            c.subscribe(f"{base}/cmd/provision", qos=1)

    def on_subscribe(c: mqtt.Client, u: Any, mid: int, rcs: Any, p: Any) -> None:
        c.publish(f"{base}/result", json.dumps({"id": rid, "cmd": cmd, "ok": ok, "result": result}), qos=1)

    def on_message(c: mqtt.Client, u: Any, m: mqtt.MQTTMessage) -> None:
        try:
            doc = json.loads(m.payload)
        except ValueError:
            return
        if isinstance(doc, dict) and doc.get("id") == rid and isinstance(doc.get("args"), dict):
            got["args"] = doc["args"]
            done.set()

    parts = urlsplit(url)
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=device, protocol=mqtt.MQTTv5, reconnect_on_failure=False)
    ca, cert, key = tls
    c.tls_set(ca_certs=str(ca), certfile=str(cert), keyfile=str(key))
    c.on_connect, c.on_subscribe, c.on_message = on_connect, on_subscribe, on_message
    try:
        c.connect(parts.hostname or "localhost", parts.port or 8883, keepalive=30)
    except OSError as err:
        raise StepFailed(cmd, f"cannot reach the broker at {url} over mutual TLS: {err}",
                         "check the network; a certificate error means this device's certificate is not "
                         "(or no longer) accepted: re-provision it") from err
    c.loop_start()
    try:
        if not done.wait(timeout_s):
            raise StepFailed(cmd, f"the hub did not answer in {timeout_s:.0f} s",
                             "the broker accepted the device but the hub's claim service did not answer: "
                             "ask the hub operator to check `venue-provision hub serve`; run this again later")
    finally:
        c.loop_stop()
        c.disconnect()
    if "error" in got:
        raise StepFailed(cmd, got["error"], "re-provision the device: its certificate is not accepted")
    return dict(got["args"])
