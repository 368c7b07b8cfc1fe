"""Reconnect policy: exponential backoff with full jitter, and a token bucket for backlog pacing."""

from __future__ import annotations

import random
from collections.abc import Callable


class Backoff:
    """Delays min_s·2^n capped at max_s, drawn uniformly in [cap/2, cap] so a city of devices that
    lost the broker together does not come back in lockstep."""

    def __init__(self, min_s: float = 1.0, max_s: float = 60.0, rng: random.Random | None = None) -> None:
        if not 0 < min_s <= max_s:
            raise ValueError("backoff needs 0 < min_s <= max_s")
        self.min_s, self.max_s = min_s, max_s
        self.failures = 0
        self.rng = rng or random.Random()  # nosec B311: reconnect jitter, not a secret

    def next(self) -> float:
        cap = min(self.max_s, self.min_s * (2 ** min(self.failures, 30)))
        self.failures += 1
        return self.rng.uniform(cap / 2, cap)

    def reset(self) -> None:
        self.failures = 0


class TokenBucket:
    """Allow `rate` items per second with a burst of `burst`; rate 0 means unlimited."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float]) -> None:
        self.rate, self.burst, self.clock = rate, burst, clock
        self.tokens = float(burst)
        self.last = clock()

    def available(self) -> int:
        if self.rate <= 0:
            return 1 << 30
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now
        return int(self.tokens)

    def take(self, n: int) -> None:
        if self.rate > 0:
            self.tokens -= n
