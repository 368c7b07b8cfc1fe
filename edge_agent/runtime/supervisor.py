"""Supervised worker threads with a restart budget (default 5 restarts in 60 s)."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

logger = logging.getLogger(__name__)


@dataclass
class Worker:
    name: str
    target: Callable[[threading.Event], None]
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None
    restarts: deque[float] = field(default_factory=deque)
    failed: bool = False
    last_error: str = ""
    error: BaseException | None = None  # what it last raised (None: it returned)


class Supervisor:
    """Runs each worker's target(stop) in a thread and restarts it when it dies unexpectedly."""

    def __init__(self, max_restarts: int = 5, window_s: float = 60.0, delay_s: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_restarts, self.window_s, self.delay_s, self.clock = max_restarts, window_s, delay_s, clock
        self.workers: dict[str, Worker] = {}
        self.gave_up = threading.Event()

    def add(self, name: str, target: Callable[[threading.Event], None]) -> Worker:
        if name in self.workers:
            raise ValueError(f"worker {name!r} already exists")
        w = Worker(name, target)
        self.workers[name] = w
        self._start(w)
        return w

    def _start(self, w: Worker) -> None:
        w.stop = threading.Event()
        w.thread = threading.Thread(target=self._body, args=(w,), name=f"worker-{w.name}", daemon=True)
        w.thread.start()

    def _body(self, w: Worker) -> None:
        while True:
            try:
                w.target(w.stop)
                if w.stop.is_set():
                    return
                w.last_error, w.error = "returned unexpectedly", None
            except Exception as err:
                logger.exception("worker %s crashed", w.name)
                w.last_error, w.error = f"{type(err).__name__}: {err}", err
            if w.stop.is_set():
                return
            now = self.clock()
            while w.restarts and now - w.restarts[0] > self.window_s:
                w.restarts.popleft()
            if len(w.restarts) >= self.max_restarts:
                logger.error("worker %s exceeded %d restarts in %.0f s: giving up", w.name,
                             self.max_restarts, self.window_s)
                w.failed = True
                self.gave_up.set()
                return
            w.restarts.append(now)
            logger.warning("restarting worker %s (%d in window)", w.name, len(w.restarts))
            if w.stop.wait(self.delay_s):
                return

    def remove(self, name: str, timeout: float = 10.0) -> None:
        w = self.workers.pop(name, None)
        if w is None:
            return
        w.stop.set()
        if w.thread:
            w.thread.join(timeout)

    def failed(self) -> list[Worker]:
        """Workers that exhausted their restart budget."""
        return [w for w in self.workers.values() if w.failed]

    def healthy(self) -> bool:
        return not self.gave_up.is_set() and all(
            w.thread is not None and w.thread.is_alive() for w in self.workers.values())

    def stop_all(self, timeout: float = 10.0) -> None:
        for name in list(self.workers):
            self.remove(name, timeout)
