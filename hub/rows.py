"""What both hub backends share (pure, no driver): per-batch outcomes, refusal counts, skip checks, the
per-device status row and the SQL both dialects run with their own placeholder."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Protocol

from edge_agent.sync.envelope import Batch
from hub.gaps import classify
from hub.screen import DeviceState

logger = logging.getLogger("hub.db")


@dataclass
class Ingested:
    """What became of one batch."""

    stored: int = 0
    dup: int = 0
    conflict: list[int] = field(default_factory=list)  # seqs held with a different record
    refused_top: int | None = None  # refused: the highest seq held for the device
    deferred: list[int] = field(default_factory=list)  # skip ids not stored (above what the device numbered)


class Backend(Protocol):
    def ingest(self, batches: list[Batch], states: list[DeviceState]) -> list[Ingested]: ...
    def reject(self, counts: Rejections) -> None: ...
    def rejections(self) -> list[dict[str, Any]]: ...
    def devices(self) -> list[dict[str, Any]]: ...
    def count(self) -> int: ...
    def close(self) -> None: ...


# (device, site, reason) -> (count, first, last, detail): messages refused, counted by the worker
Rejections = dict[tuple[str, str, str], tuple[int, float, float, str]]

REJECT_SQL = ("INSERT INTO rejections VALUES ({p},{p},{p},{p},{p},{p},{p}) ON CONFLICT (device_id, site, reason)"
              " DO UPDATE SET count=rejections.count+excluded.count, last=excluded.last, detail=excluded.detail")
REJECTIONS_SQL = "SELECT device_id, site, reason, count, first, last, detail FROM rejections ORDER BY device_id, reason"


def rejection_rows(rows: list[tuple[Any, ...]]) -> list[dict[str, Any]]:
    return [{"device": d, "site": s, "reason": r, "count": n, "first": f, "last": la, "detail": x}
            for d, s, r, n, f, la, x in rows]


def with_rejections(devices: list[dict[str, Any]], rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each device's row with `rejected`: {reason: messages refused}."""
    per: dict[str, dict[str, int]] = {}
    for r in rows:
        mine = per.setdefault(r["device"], {})
        mine[r["reason"]] = mine.get(r["reason"], 0) + r["count"]
    for d in devices:
        d["rejected"] = per.get(d["device"], {})
    return devices


def split_skips(b: Batch, held_top: int | None) -> tuple[list[tuple[int, int, str]], list[int]]:
    """The batch's skip announcements to store, and the ids held back: a range must lie below the run
    (numbers a start skipped) or not above the highest seq the device is known to have numbered (this
    batch's, or what the hub holds); otherwise it would explain away numbers not handed out yet. Held-back
    ranges are not acked, so the device announces them again, with a later batch."""
    top = max(max(b.seq) if b.seq else 0, held_top or 0)
    keep, held = [], []
    for sid, first, last, reason in b.skipped:
        if last < b.epoch or last <= top:
            keep.append((first, last, reason))
        else:
            held.append(sid)
    return keep, held


def device_row(cols: tuple[Any, ...], meta: dict[str, Any], events: int, raw: list[tuple[int, int]],
               skips: list[tuple[int, int, str]], epochs: set[int], top_in: dict[tuple[int, int], int | None],
               conflicts: int, received: tuple[int, int] | None) -> dict[str, Any]:
    """The per-device status both backends report (columns as selected from `devices`)."""
    dev, site, online, boot, epoch, last_seq, last_seen = cols
    acc = classify(raw, skips, epochs, top_in, received)
    return {"device": dev, "site": site, "online": bool(online), "boot": boot, "epoch": epoch,
            "last_seq": last_seq, "last_seen": last_seen, "events": events, "meta": meta, **acc,
            "lost_count": sum(x["count"] for x in acc["lost"]), "dropped_ranges": len(skips),
            "conflicts": conflicts}


def differing(batch: Batch, stored: list[tuple[int, str, float, str]]) -> list[int]:
    """Seqs of the batch stored with another record (kind, ts or body differ)."""
    mine = {s: (k, t, b) for s, k, t, b in zip(batch.seq, batch.kind, batch.ts, batch.body, strict=True)}
    return sorted(s for s, k, t, b in stored if s in mine and mine[s] != (k, t, b))


def log_outcome(b: Batch, res: Ingested) -> None:
    if res.refused_top is not None:
        logger.warning("device %s: batch %s of a new run starting at %d refused: seq %d is already held "
                       "(the device's numbering went back)", b.device, b.batch, b.epoch, res.refused_top)
    if res.conflict:  # an alarm: the device, or someone who took its identity, rewrote history
        logger.error("ALARM device %s: %d records differ from those already held under the same seq (e.g. %d): "
                       "kept apart, not acked", b.device, len(res.conflict), res.conflict[0])


# Each announcement with the highest seq received inside it: one statement, one index probe per range.
SKIPS_SQL = ("SELECT first, last, reason, (SELECT MAX(seq) FROM events e WHERE e.device_id = {p} AND e.seq BETWEEN"
             " s.first AND s.last) FROM skips s WHERE s.device_id = {p}")


def split_tops(rows: list[tuple[Any, ...]]) -> tuple[list[tuple[int, int, str]], dict[tuple[int, int], int | None]]:
    return [(a, b, r) for a, b, r, _ in rows], {(a, b): top for a, b, _, top in rows}


GAP_SQL = ("SELECT seq + 1, nxt - 1 FROM (SELECT seq, LEAD(seq) OVER (ORDER BY seq) AS nxt FROM events"
           " WHERE device_id = {p}) AS s WHERE nxt > seq + 1")
