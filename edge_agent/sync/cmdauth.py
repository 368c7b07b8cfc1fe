"""Admission of downlink commands: hub signature, this device, time window, counter (edge_agent/core/signed.py).

`CommandAuth.admit` returns None for a command that may run (its counter is then already durable) or the
reason it is refused. It never raises for what arrives on the wire.
"""

from __future__ import annotations

import logging
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from edge_agent.core import signed
from edge_agent.core.clock import SYSTEM, Clock
from edge_agent.store.counter import CounterFile

logger = logging.getLogger(__name__)


class CommandAuth:
    def __init__(self, key: Ed25519PublicKey | None, site: str, device: str, counter: CounterFile,
                 clock: Clock = SYSTEM) -> None:
        self.key, self.site, self.device, self.counter, self.clock = key, site, device, counter, clock

    def admit(self, name: str, doc: dict[str, Any]) -> str | None:
        got = signed.check(self.key, self.site, self.device, name, doc, self.clock.time(), self.counter.value)
        if isinstance(got, signed.Refusal):
            return got.reason
        # Stored before the command runs: a crash mid-command never lets the same command run twice.
        if not self.counter.advance(got.ctr):
            return f"replayed: counter {got.ctr} is not above the last accepted {self.counter.value}"
        return None
