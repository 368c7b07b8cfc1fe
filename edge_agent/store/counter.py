"""The last accepted command counter, durable across restarts and power cuts.

Guarantee: `advance(n)` returns only after n is on disk (temp file, fsync, rename, directory fsync), so a
command is acted on only once its counter is stored, and a re-delivered command (retained, or resent after
a reconnect) is refused even after a crash. The file is 0600 in a 0700 directory. A missing file reads as
0; an unreadable one raises OSError/ValueError (the agent must not silently restart from 0 and accept
old commands again).
"""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path

logger = logging.getLogger(__name__)


class CounterFile:
    def __init__(self, path: Path, floor: int = 0) -> None:
        self.path = path
        self._lock = threading.Lock()
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        got = self._read()
        self._value = -1 if got is None else got
        if got is None:  # stored at once: a restart keeps this floor, it does not move it
            self.advance(max(floor, 0))

    def _read(self) -> int | None:
        try:
            doc = json.loads(self.path.read_text())
        except FileNotFoundError:
            return None
        except (ValueError, UnicodeDecodeError):
            doc = None
        value = doc.get("ctr") if isinstance(doc, dict) else None
        if type(value) is not int or value < 0:
            logger.error("command counter %s is damaged: set aside, starting from the time floor", self.path)
            os.replace(self.path, self.path.with_name(self.path.name + ".damaged"))
            return None
        return value

    @property
    def value(self) -> int:
        return self._value

    def advance(self, value: int) -> bool:
        """Store `value` if it is above the current one; False (nothing written) otherwise."""
        with self._lock:
            if value <= self._value:
                return False
            tmp = self.path.with_name(self.path.name + ".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.write(fd, json.dumps({"ctr": value}).encode())
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.path)
            dfd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
            self._value = value
            return True
