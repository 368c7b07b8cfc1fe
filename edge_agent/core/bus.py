"""Events between producers in one agent (a camera's crossings feeding a gate's occupancy).

Deliberately small: synchronous callbacks on the publisher's thread, no persistence (what must be
durable goes through the outbox). A subscriber that raises is logged and does not stop the others.
One bus per agent, handed to every role in its Context (no process-global state: two agents in one
process, as in tests, do not hear each other).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)


class LocalBus:
    def __init__(self) -> None:
        self._subs: dict[str, list[Callable[[Any], None]]] = {}
        self._lock = threading.Lock()

    def subscribe(self, topic: str, fn: Callable[[Any], None]) -> Callable[[], None]:
        """Returns the function that unsubscribes."""
        with self._lock:
            self._subs.setdefault(topic, []).append(fn)

        def cancel() -> None:
            with self._lock:
                subs = self._subs.get(topic, [])
                if fn in subs:
                    subs.remove(fn)

        return cancel

    def publish(self, topic: str, event: Any) -> int:
        with self._lock:
            subs = list(self._subs.get(topic, ()))
        for fn in subs:
            try:
                fn(event)
            except Exception:
                logger.exception("local subscriber of %s failed", topic)
        return len(subs)

