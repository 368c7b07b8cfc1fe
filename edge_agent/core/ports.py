"""The seams between the agent and its roles.

A role is built once from its own config model and a Context, and run in a supervised thread:

    role = factory(cfg, ctx)        # must not start threads or open ports
    role.commands()                 # {"gate.allowlist": handler, ...}: downlink commands it answers
    role.run(stop)                  # returns when stop is set; raising gets it restarted within budget

Guarantees: `ctx.sink.put` returns once the record is durable (see store/outbox.py); a handler that raises
CommandError answers the hub with its message, any other exception with "internal error".
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from edge_agent.core.bus import LocalBus
from edge_agent.core.clock import SYSTEM, Clock
from edge_agent.records import DataClass, PutResult, Record

Handler = Callable[[dict[str, Any]], dict[str, Any]]


class CommandError(Exception):
    """A command that cannot be carried out; the message goes back to the hub."""


class Sink(Protocol):
    """Where a producer writes; `put` returns once the record is durable (see Outbox.put)."""

    def put(self, cls: DataClass | str, kind: str, body: Any, *, key: str | None = None,
            ts: float | None = None, timeout: float | None = 30.0) -> PutResult: ...

    def make_record(self, cls: DataClass | str, kind: str, body: Any, *, key: str | None = None,
                    ts: float | None = None, origin: tuple[str, str, int] | None = None) -> Record: ...

    def put_many(self, records: list[Record], timeout: float | None = 60.0) -> list[PutResult]: ...

    def origin_last(self, source: str) -> tuple[str, int] | None: ...


@dataclass(frozen=True)
class Context:
    """What the agent hands every role: where records go, the in-process bus between roles (a camera's
    crossings feeding a gate's occupancy), the boot number and the clock."""

    sink: Sink
    bus: LocalBus = field(default_factory=LocalBus)
    boot: int = 0
    clock: Clock = SYSTEM


@dataclass(frozen=True)
class Emit:
    """A record a role's pure core decided on; the role's shell puts it into the sink."""

    cls: DataClass
    kind: str
    body: dict[str, Any]
    key: str | None = None

    def put(self, sink: Sink) -> PutResult:
        return sink.put(self.cls, self.kind, self.body, key=self.key)


class Producer(Protocol):
    """A role (gate, toilet, camera, sensor nodes, ...) as the agent runs it."""

    name: str

    def commands(self) -> dict[str, Handler]: ...

    def run(self, stop: threading.Event) -> None: ...


Factory = Callable[[Any, Context], Producer]
