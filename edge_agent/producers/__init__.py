"""Producers push records into the outbox through one small interface.

A producer is built from its own config sub-model and run in a supervised thread:
    producer.run(sink, stop)   # returns when stop is set; raising gets it restarted within budget
Vision, gate, toilet and kiosk roles are producers; register them in PRODUCERS.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Protocol

from edge_agent.records import DataClass, PutResult, Record


class Sink(Protocol):
    """Where a producer writes; `put` returns once the record is durable (see Outbox.put)."""

    def put(self, cls: DataClass | str, kind: str, body: Any, *, key: str | None = None,
            ts: float | None = None, timeout: float | None = 30.0) -> PutResult: ...

    def make_record(self, cls: DataClass | str, kind: str, body: Any, *, key: str | None = None,
                    ts: float | None = None, origin: tuple[str, str, int] | None = None) -> Record: ...

    def put_many(self, records: list[Record], timeout: float | None = 60.0) -> list[PutResult]: ...

    def origin_last(self, source: str) -> tuple[str, int] | None: ...


class Producer(Protocol):
    name: str

    def run(self, sink: Sink, stop: threading.Event) -> None: ...


def _synthetic(cfg: Any, boot: int) -> Producer:
    from edge_agent.producers.synthetic import SyntheticGate

    return SyntheticGate(cfg, boot)


def _vision(cfg: Any, boot: int) -> Producer:
    from edge_agent.producers.vision import VisionProducer  # imports cv2/onnxruntime only when configured

    return VisionProducer(cfg, boot)


def _gate(cfg: Any, boot: int) -> Producer:
    from edge_agent.gate.role import GateRole

    return GateRole(cfg, boot)


def _toilet(cfg: Any, boot: int) -> Producer:
    from edge_agent.toilet.role import ToiletRole

    return ToiletRole(cfg, boot)


def _nodes(cfg: Any, boot: int) -> Producer:
    from edge_agent.producers.nodes import NodesProducer

    return NodesProducer(cfg, boot)


def _kiosk(cfg: Any, boot: int) -> Producer:
    from edge_agent.kiosk.role import KioskRole  # imports fastapi/uvicorn only when configured

    return KioskRole(cfg, boot)


# Explicit registry: config `type` -> factory(config, boot). Heavy backends import lazily inside.
PRODUCERS: dict[str, Callable[[Any, int], Producer]] = {
    "synthetic": _synthetic, "vision": _vision, "gate": _gate, "toilet": _toilet, "nodes": _nodes,
    "kiosk": _kiosk,
}


def build(cfg: Any, boot: int) -> Producer:
    try:
        factory = PRODUCERS[cfg.type]
    except KeyError:
        raise ValueError(f"unknown producer type {cfg.type!r}; known: {sorted(PRODUCERS)}") from None
    return factory(cfg, boot)
