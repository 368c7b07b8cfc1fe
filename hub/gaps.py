"""Loss accounting for one device (pure): which missing seqs are dropped on purpose, lost, or unexplained.

A *hole* is a run of seqs missing between two the hub received. The device announces ranges with a
reason (docs/protocol.md); the hub reads the reasons this way:

    EXPLAINED (budget, ttl, coalesced, disk_full, restart): dropped on purpose or never used — no loss
    EXACT (quarantined): every seq in the range was a queued record — each one not received is lost
    VAGUE (quarantine_unread): only a bound on numbers an unreadable file may have held: what was not
        received inside it after the first seq received is shown as unknown, never counted
    anything else (power_loss, rewind, seq_rewind, quarantine_unread, a reason we do not know yet):
        numbers that may or may not have been used. Seqs of a run are consecutive, so a hole below the
        highest seq received inside the range is lost; above it nobody knows (unused numbers, or records
        lost before they were sent): reported as an `unknown` range, not counted.

What no announcement covers is an unexplained gap, except a hole that ends right below a new epoch
(a device that numbered a fresh database without announcing the jump): an `unknown` range too.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

EXPLAINED = frozenset({"budget", "ttl", "coalesced", "disk_full", "restart"})
EXACT = frozenset({"quarantined"})
VAGUE = frozenset({"quarantine_unread"})  # a bound, not a run's numbers: never counted, only shown as unknown

Range = tuple[int, int]


def subtract(gaps: Iterable[Iterable[int]], holes: Iterable[tuple[int, int]]) -> list[list[int]]:
    """Remove the ranges in holes from gaps (all inclusive)."""
    out = [list(g) for g in gaps]
    for a, b in sorted(holes):
        nxt = []
        for g0, g1 in out:
            if b < g0 or a > g1:
                nxt.append([g0, g1])
                continue
            if g0 < a:
                nxt.append([g0, a - 1])
            if b < g1:
                nxt.append([b + 1, g1])
        out = nxt
    return out


def intersect(pieces: list[list[int]], a: int, b: int) -> list[list[int]]:
    """The parts of pieces inside [a, b]."""
    return [[max(p0, a), min(p1, b)] for p0, p1 in pieces if p0 <= b and p1 >= a]


def loss_ranges(skips: Iterable[tuple[int, int, str]]) -> list[tuple[int, int, str]]:
    """Announcements that may hide lost records (not EXPLAINED), narrowest first: the most precise wins."""
    return sorted(((a, b, r) for a, b, r in skips if r not in EXPLAINED), key=lambda s: (s[1] - s[0], s[0]))


def classify(holes: Iterable[Range], skips: Iterable[tuple[int, int, str]], epochs: set[int],
             top_in: Mapping[Range, int | None], received: Range | None = None) -> dict[str, list[Any]]:
    """gaps (unexplained), lost ({first, last, count, reason}) and unknown ({first, last, reason}).

    top_in: for each loss range (first, last), the highest seq received inside it (None: none).
    received: the lowest and highest seq received; loss ranges reaching below or above them are
    reported too (no hole shows records lost before the first or after the last one received).
    """
    skips = list(skips)
    explained = [(a, b) for a, b, r in skips if r in EXPLAINED]
    losses = loss_ranges(skips)
    gaps: list[list[int]] = []
    lost: list[dict[str, Any]] = []
    unknown: list[dict[str, Any]] = []
    pieces = [list(h) for h in holes]
    head_to = tail_from = None
    if losses:
        last = max(b for _, b, _ in losses)
        head_to, tail_from = (received[0] - 1, received[1] + 1) if received else (last, last + 1)
        precise = [a for a, _, r in losses if r not in VAGUE]
        if precise and min(precise) <= head_to:
            pieces.append([min(precise), head_to])
        if last >= tail_from:
            pieces.append([tail_from, last])
    for piece in subtract(pieces, explained):
        rest = [piece]
        for a, b, reason in losses:
            if not rest:
                break
            top = b if reason in EXACT else None if reason in VAGUE else top_in.get((a, b))
            if top is not None:
                lost += [{"first": p0, "last": p1, "count": p1 - p0 + 1, "reason": reason}
                         for p0, p1 in intersect(rest, a, min(top, b))]
            unknown += [{"first": p0, "last": p1, "reason": reason}
                        for p0, p1 in intersect(rest, a if top is None else top + 1, b)]
            rest = subtract(rest, [(a, b)])
        for p0, p1 in rest:
            if tail_from is not None and head_to is not None and (p0 >= tail_from or p1 <= head_to):
                continue  # below or above everything received, outside any loss range: nothing to say
            if p1 + 1 in epochs:
                unknown.append({"first": p0, "last": p1, "reason": "new_epoch"})
            else:
                gaps.append([p0, p1])
    return {"gaps": gaps, "lost": lost, "unknown": unknown}


def explain_gaps(raw: list[tuple[int, int]], skips: list[tuple[int, int]], epochs: set[int]) -> list[list[int]]:
    """Missing seq ranges minus those announced as dropped and minus jumps to a new epoch."""
    return classify(raw, [(a, b, "budget") for a, b in skips], epochs, {})["gaps"]
