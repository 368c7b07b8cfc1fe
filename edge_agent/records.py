"""Record model shared by producers, the outbox and the uplink (pure: no I/O)."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class DataClass(str, enum.Enum):
    """Durability and drop policy of a record.

    transaction: fsynced before the producer hears "ok", never dropped.
    measurement: normal sync, oldest dropped first when over budget or past TTL.
    state:       latest value per key only (coalesced).
    """

    TRANSACTION = "transaction"
    MEASUREMENT = "measurement"
    STATE = "state"


# Order in which the uplink serves classes: business facts first, then current state, then series.
PRIORITY = (DataClass.TRANSACTION, DataClass.STATE, DataClass.MEASUREMENT)


@dataclass(frozen=True, slots=True)
class Record:
    """One event as a producer hands it over; `body` is already-encoded JSON text."""

    cls: DataClass
    kind: str
    body: str
    ts: float
    key: str | None = None  # coalescing key, state records only
    # (source, epoch, n): a record a device numbered itself; stored only if n is above the highest
    # stored for that source and epoch (a new epoch, e.g. a wiped node, starts numbering again)
    origin: tuple[str, str, int] | None = None


@dataclass(slots=True)
class Block:
    """Consecutive outbox rows of one class, column by column (cheap to fetch and to encode)."""

    seq: list[int]
    ts: list[float]
    kind: list[str]
    body: list[str]

    def __len__(self) -> int:
        return len(self.seq)


@dataclass(frozen=True, slots=True)
class PutResult:
    """What the producer is told: durable with a seq, or dropped with a reason."""

    seq: int | None
    dropped: str | None = None

    @property
    def ok(self) -> bool:
        return self.seq is not None


def to_ranges(seqs: list[int]) -> list[list[int]]:
    """Compress sorted-or-not sequence numbers into inclusive [first, last] ranges."""
    out: list[list[int]] = []
    for s in sorted(seqs):
        if out and s == out[-1][1] + 1:
            out[-1][1] = s
        elif not out or s > out[-1][1]:
            out.append([s, s])
    return out
