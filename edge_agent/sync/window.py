"""The uplink's in-flight window and read cursors: what awaits the hub's ack, when to send it again, and
what an ack may delete.

Pure: no paho, no sqlite, no threads; time comes in as `now`. The wiring (sync/uplink.py) holds one lock
around a Window and does the I/O the window decides on.

Rules:
- At most `size` batches are in flight. A batch not acked after ack_timeout_s·min(2^(tries-1), 4) is due
  again; a batch whose publish failed (broker refused it, paho's queue full) is due at the next pass.
- A new generation (every connect, and a resync) forgets everything in flight: what it carried is still in
  the outbox and goes out again; acks of an older generation no longer match anything.
- An ack is accepted only for a batch in flight, and only of that batch's class. It deletes only seqs that
  batch carried (its ranges clipped to the batch's), only skip announcements that batch made, renumbers
  only seqs inside the batch, and a "seq_rewind" counts only for a batch in flight. Anything else (an ack
  of an earlier run, or forged) is counted and changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from edge_agent.records import DataClass
from edge_agent.sync.envelope import Ack

Ranges = list[list[int]]
NOW = -1e18  # a sent_at that makes a batch due at the next pass


@dataclass
class Flight:
    """One batch awaiting its ack."""

    cls: DataClass
    payload: bytes
    skip_ids: list[int]
    ranges: Ranges  # seqs of the rows it carries, as sorted [first, last] ranges
    sent_at: float
    tries: int = 1


@dataclass(frozen=True)
class AckPlan:
    """What one accepted ack lets the outbox do; every list lies inside the acked batch."""

    batch: str
    flight: Flight
    generation: int
    delete: Ranges
    skips: list[int]
    renumber: Ranges
    rebase_top: int | None  # "seq_rewind": renumber this run above the hub's top, then send it all again
    error: str | None


@dataclass
class WindowStats:
    resends: int = 0
    stale_acks: int = 0  # acks of batches not in flight (an earlier session or run, or forged): ignored
    foreign_acks: int = 0  # acks naming a batch in flight under another class: ignored
    clipped_acks: int = 0  # accepted acks that named seqs or skips the batch did not carry (those ignored)
    hub_back_limited: int = 0  # hub-online announcements too close to the last one: no early re-send


def _merge(ranges: Ranges) -> Ranges:
    out: Ranges = []
    for a, b in sorted(r for r in ranges if r[0] <= r[1]):
        if out and a <= out[-1][1] + 1:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return out


def intersect(ranges: Ranges, inside: Ranges) -> Ranges:
    """The parts of `ranges` that lie inside `inside`; linear after sorting (a forged ack may list many)."""
    a, b = _merge(ranges), _merge(inside)
    out: Ranges = []
    i = j = 0
    while i < len(a) and j < len(b):
        lo, hi = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if lo <= hi:
            out.append([lo, hi])
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return out


def count(ranges: Ranges) -> int:
    return sum(b - a + 1 for a, b in ranges)


class Window:
    """Batches in flight for one device, keyed by batch id."""

    def __init__(self, size: int, ack_timeout_s: float, boot: int = 0, nonce: str = "0") -> None:
        if size < 1 or ack_timeout_s <= 0:
            raise ValueError("window needs size >= 1 and ack_timeout_s > 0")
        self.size, self.ack_timeout_s = size, ack_timeout_s
        self.boot, self.nonce = boot, nonce  # the nonce keeps batch ids unique across runs (boot can roll back)
        self.generation = 0
        self.stats = WindowStats()
        self._flights: dict[str, Flight] = {}
        self._mids: dict[int, str] = {}
        self._batch_no = 0
        self._hub_back_at = -1e18

    def __len__(self) -> int:
        return len(self._flights)

    def __contains__(self, bid: object) -> bool:
        return bid in self._flights

    def room(self) -> int:
        return max(0, self.size - len(self._flights))

    def new_generation(self) -> int:
        """Forget everything in flight (a new connection, or a resync); return the new generation."""
        self._flights.clear()
        self._mids.clear()
        self._hub_back_at = -1e18  # a new connection may need the hub's next announcement at once
        self.generation += 1
        return self.generation

    def next_id(self) -> str:
        self._batch_no += 1
        return f"{self.boot:x}.{self.nonce}-{self.generation:x}-{self._batch_no:x}"

    def add(self, bid: str, flight: Flight) -> None:
        if len(self._flights) >= self.size:
            raise ValueError("window full")
        self._flights[bid] = flight

    def skips_in_flight(self) -> set[int]:
        return {i for f in self._flights.values() for i in f.skip_ids}

    def due(self, now: float) -> list[tuple[str, Flight]]:
        """Batches to send again now (their tries and sent time are updated)."""
        out = []
        for bid, f in self._flights.items():
            # Exponential per batch, capped so a hub back from a long outage is served soon.
            if now - f.sent_at >= self.ack_timeout_s * min(2 ** (f.tries - 1), 4):
                f.tries += 1
                f.sent_at = now
                self.stats.resends += 1
                out.append((bid, f))
        return out

    # ---------------------------------------------------------------- what the broker said

    def sent(self, bid: str, mid: int) -> None:
        """The publish of `bid` was queued as paho message `mid` (its PUBACK may still fail)."""
        self._mids[mid] = bid

    def not_sent(self, bid: str) -> None:
        """paho did not take the publish: send it again at the next pass."""
        if bid in self._flights:
            self._flights[bid].sent_at = NOW

    def refused(self, mid: int) -> str | None:
        """The broker refused message `mid` (v5 PUBACK failure): its batch goes again at the next pass."""
        bid = self._mids.pop(mid, None)
        if bid is not None:
            self.not_sent(bid)
        return bid

    def hub_back(self, now: float) -> int:
        """The hub re-subscribed and may have lost what was in flight: everything is due now; the number due.

        At most once per half ack timeout within one connection: a flood of (forged) announcements must not
        turn the device into a re-send amplifier; a batch the limit holds back still goes at its own timeout.
        With nothing in flight an announcement uses up nothing."""
        if not self._flights:
            return 0
        if now - self._hub_back_at < self.ack_timeout_s / 2:
            self.stats.hub_back_limited += 1
            return 0
        self._hub_back_at = now
        for f in self._flights.values():
            f.sent_at = NOW
        return len(self._flights)

    # ---------------------------------------------------------------- acks

    def ack(self, ack: Ack) -> AckPlan | None:
        """Accept an ack for a batch in flight (removing it) and clip what it names to that batch."""
        flight = self._flights.get(ack.batch)
        if flight is None:
            self.stats.stale_acks += 1
            return None
        if ack.cls is not flight.cls:
            self.stats.foreign_acks += 1
            return None
        del self._flights[ack.batch]
        delete = intersect(ack.ranges, flight.ranges)
        carried = set(flight.skip_ids)
        skips = [i for i in ack.skip_ids if i in carried]
        renumber = intersect(ack.conflict, flight.ranges)
        if (count(delete) < count(_merge(ack.ranges)) or len(skips) < len(ack.skip_ids)
                or count(renumber) < count(_merge(ack.conflict))):
            self.stats.clipped_acks += 1
        top = ack.top if ack.error == "seq_rewind" else None
        return AckPlan(ack.batch, flight, self.generation, delete, skips, renumber, top, ack.error)

    def restore(self, plan: AckPlan, now: float) -> bool:
        """The outbox could not apply an accepted ack (disk full): keep the batch in flight, due after the
        timeout, so its next ack deletes. False when a new generation began meanwhile."""
        if plan.generation != self.generation:
            return False
        plan.flight.sent_at = now
        self._flights.setdefault(plan.batch, plan.flight)
        return True


@dataclass
class Cursors:
    """Where the sender reads next, per class: live rows (seq >= the floor set at connect) first, then the
    backlog below the floor, paced by the wiring."""

    live_floor: dict[DataClass, int] = field(default_factory=dict)
    live_after: dict[DataClass, int] = field(default_factory=dict)
    backlog_after: dict[DataClass, int] = field(default_factory=dict)

    def reset(self, next_seq: int) -> None:
        for cls in DataClass:
            self.live_floor[cls] = next_seq
            self.live_after[cls] = next_seq - 1
            self.backlog_after[cls] = 0

    def backlog_left(self, cls: DataClass) -> bool:
        return self.backlog_after[cls] < self.live_floor[cls]

    def backlog_done(self, cls: DataClass) -> None:
        self.backlog_after[cls] = self.live_floor[cls]
