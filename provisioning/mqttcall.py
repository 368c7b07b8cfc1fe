"""One question over MQTT and its answer: connect over TLS, subscribe, publish once, wait for the reply.

Used by the claim (anonymous, server-authenticated TLS) and by a device's reports to the hub (mutual TLS).
Raises StepFailed with `hint` when the broker cannot be reached, refuses, or no answer comes in time.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from provisioning import StepFailed


def ask(host: str, port: int, client_id: str, tls: tuple[Path, Path | None, Path | None], listen: str,
        topic: str, payload: bytes, accept: Callable[[bytes], bool], timeout_s: float, step: str,
        hints: dict[str, str]) -> bytes:
    """Publish `payload` on `topic` once subscribed to `listen`; return the first reply `accept` takes.
    hints: what to do when the broker is 'unreachable', 'refused', or gives 'no answer'."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    got: dict[str, Any] = {}
    done = threading.Event()

    def on_connect(c: mqtt.Client, u: Any, f: Any, rc: Any, p: Any) -> None:
        if rc.is_failure:
            got["error"] = f"broker refused {client_id}: {rc}"
            done.set()
        else:
            c.subscribe(listen, qos=1)

    def on_message(c: mqtt.Client, u: Any, m: mqtt.MQTTMessage) -> None:
        if accept(bytes(m.payload)):
            got["answer"] = bytes(m.payload)
            done.set()

    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5,
                    reconnect_on_failure=False)
    ca, cert, key = tls
    c.tls_set(ca_certs=str(ca), certfile=str(cert) if cert else None, keyfile=str(key) if key else None)
    c.on_connect, c.on_message = on_connect, on_message
    c.on_subscribe = lambda cl, u, mid, rcs, p: cl.publish(topic, payload, qos=1)
    try:
        c.connect(host, port, keepalive=30)
    except OSError as err:
        raise StepFailed(step, f"cannot reach {host}:{port}: {err}", hints["unreachable"]) from err
    c.loop_start()
    try:
        if not done.wait(timeout_s):
            raise StepFailed(step, f"no answer in {timeout_s:.0f} s", hints["no answer"])
    finally:
        c.loop_stop()
        c.disconnect()
    if "error" in got:
        raise StepFailed(step, got["error"], hints["refused"])
    return bytes(got["answer"])
