"""One question over MQTT and its answer: connect over TLS, subscribe, publish once, wait for the reply.

Used by the claim (anonymous, server-authenticated TLS) and by a device's reports to the hub (mutual TLS).
Raises StepFailed with `hint` when the broker cannot be reached, refuses, or no answer comes in time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from provisioning import StepFailed


def ask(host: str, port: int, client_id: str, tls: tuple[Path, Path | None, Path | None], listen: str,
        topic: str, payload: bytes, accept: Callable[[bytes], bool], timeout_s: float, step: str,
        hints: dict[str, str]) -> bytes:
    """Publish `payload` on `topic` once subscribed to `listen`; return the first reply `accept` takes.
    hints: what to do when the broker is 'unreachable', 'refused', or gives 'no answer'."""
    from edge_agent.config.models import MqttConfig, TlsConfig
    from edge_agent.sync.session import MqttSession

    ca, cert, key = tls
    cfg = MqttConfig(url=f"mqtts://{host}:{port}", tls=TlsConfig(ca=ca, cert=cert, key=key))
    got: list[bytes] = []

    def on_message(t: str, body: bytes, props: Any) -> None:
        if not got and accept(body):
            got.append(body)

    try:
        s = MqttSession(cfg, client_id, subscriptions=[(listen, 1)], on_message=on_message,
                        on_online=lambda: s.publish(topic, payload, qos=1), name=f"ask-{step}")
    except ValueError as err:  # a certificate or key file that is not there
        raise StepFailed(step, str(err), hints["unreachable"]) from err
    deadline = time.monotonic() + timeout_s
    try:
        if not s.connect_once(timeout_s):
            if s.refusal is not None:
                raise StepFailed(step, f"broker refused {client_id}: {s.refusal}", hints["refused"])
            raise StepFailed(step, s.last_error or f"cannot reach {host}:{port}", hints["unreachable"])
        while not got and time.monotonic() < deadline:
            if not s.loop_once(0.1):
                raise StepFailed(step, s.last_error or "connection lost", hints["unreachable"])
        if not got:
            raise StepFailed(step, f"no answer in {timeout_s:.0f} s", hints["no answer"])
    finally:
        s.close()
    return got[0]
