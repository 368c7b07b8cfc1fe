"""A bounded hand-over from the MQTT network thread to the ingest worker: back-pressure, not memory growth.

`put` blocks while the inbox holds `max_items` messages or `max_bytes` payload bytes (one message larger
than the whole budget still passes when the inbox is empty, so nothing waits forever). Blocking the network
thread stops it reading the socket: the broker then keeps (or, past its own limits, drops) what it could
not deliver, and devices re-send what was never acked. The hub's memory stays bounded either way.
"""

from __future__ import annotations

import threading
from collections import deque


class Inbox:
    """(topic, payload) pairs, bounded in count and bytes."""

    def __init__(self, max_items: int = 1000, max_bytes: int = 64 * 1024 * 1024) -> None:
        if max_items < 1 or max_bytes < 1:
            raise ValueError("max_items and max_bytes must be positive")
        self.max_items, self.max_bytes = max_items, max_bytes
        self._items: deque[tuple[str, bytes]] = deque()
        self._bytes = 0
        self._cond = threading.Condition()
        self._closed = False
        self.peak_bytes = 0
        self.waits = 0  # times a put had to wait: back-pressure applied

    def __len__(self) -> int:
        return len(self._items)

    def _full(self, n: int) -> bool:
        return bool(self._items) and (len(self._items) >= self.max_items or self._bytes + n > self.max_bytes)

    def put(self, topic: str, payload: bytes) -> bool:
        """Queue one message, waiting for room; False once the inbox is closed."""
        n = len(payload)
        with self._cond:
            if self._full(n) and not self._closed:
                self.waits += 1
                self._cond.wait_for(lambda: self._closed or not self._full(n))
            if self._closed:
                return False
            self._items.append((topic, payload))
            self._bytes += n
            self.peak_bytes = max(self.peak_bytes, self._bytes)
            self._cond.notify_all()
            return True

    def take(self, max_items: int, timeout: float) -> list[tuple[str, bytes]]:
        """Up to max_items messages, waiting at most timeout for the first."""
        with self._cond:
            if not self._items:
                self._cond.wait_for(lambda: self._items or self._closed, timeout)
            out: list[tuple[str, bytes]] = []
            while self._items and len(out) < max_items:
                topic, payload = self._items.popleft()
                self._bytes -= len(payload)
                out.append((topic, payload))
            if out:
                self._cond.notify_all()
            return out

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
