"""Step-by-step progress for a technician: every step says what it does, how it went and, if it failed,
what to do next. Output goes to any text stream; the clock is injected."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TextIO

from provisioning import Pending, ProvisioningError, StepFailed


class Progress:
    def __init__(self, total: int, out: TextIO = sys.stdout, clock: Callable[[], float] = time.monotonic) -> None:
        self.total, self.out, self.clock = total, out, clock
        self.n = 0
        self.detail = ""

    @contextmanager
    def step(self, title: str, hint: str = "") -> Iterator[Progress]:
        """Run one step; a ProvisioningError inside becomes StepFailed with a hint (printed, re-raised)."""
        self.n += 1
        self.detail = ""
        print(f"[{self.n}/{self.total}] {title} ...", end="", file=self.out, flush=True)
        t = self.clock()
        try:
            yield self
        except Pending:
            print(f" waiting — {self.detail}", file=self.out, flush=True)
            raise
        except StepFailed as err:
            self._failed(str(err), err.hint)
            raise
        except (ProvisioningError, OSError) as err:
            self._failed(str(err), hint)
            raise StepFailed(title, str(err), hint) from err
        took = self.clock() - t
        print(f" ok ({took:.1f} s){' — ' + self.detail if self.detail else ''}", file=self.out, flush=True)

    def _failed(self, message: str, hint: str) -> None:
        print(f" FAILED\n      {message}", file=self.out)
        if hint:
            print(f"      what to do: {hint}", file=self.out, flush=True)
