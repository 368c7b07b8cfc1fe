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

import heapq
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

    Each missing seq goes to the narrowest loss range holding it. One sweep over the pieces and the
    ranges, both sorted: O((holes + skips) log(holes + skips)), not holes x skips.
    """
    skips = list(skips)
    losses = loss_ranges(skips)
    pieces = [(h[0], h[1]) for h in holes]
    head_to = tail_from = None
    if losses:
        last = max(b for _, b, _ in losses)
        head_to, tail_from = (received[0] - 1, received[1] + 1) if received else (last, last + 1)
        precise = [a for a, _, r in losses if r not in VAGUE]
        if precise and min(precise) <= head_to:
            pieces.append((min(precise), head_to))
        if last >= tail_from:
            pieces.append((tail_from, last))
    parts = _minus(pieces, _union((a, b) for a, b, r in skips if r in EXPLAINED))
    runs = _assign(parts, losses, top_in)
    out: dict[str, list[tuple[Any, ...]]] = {"gaps": [], "lost": [], "unknown": []}
    for key, rank, what, p0, p1 in runs:
        if what == "rest":
            if tail_from is not None and head_to is not None and (p0 >= tail_from or p1 <= head_to):
                continue  # below or above everything received, outside any loss range: nothing to say
            if p1 + 1 in epochs:
                out["unknown"].append((key, rank, p0, {"first": p0, "last": p1, "reason": "new_epoch"}))
            else:
                out["gaps"].append((key, rank, p0, [p0, p1]))
            continue
        a, b, reason = losses[rank]
        if what == "lost":
            out["lost"].append((key, rank, p0, {"first": p0, "last": p1, "count": p1 - p0 + 1, "reason": reason}))
        else:
            out["unknown"].append((key, rank, p0, {"first": p0, "last": p1, "reason": reason}))
    # The order the reports always had: by piece (holes, then the head, then the tail), then narrowest range.
    return {k: [x[-1] for x in sorted(v, key=lambda x: x[:3])] for k, v in out.items()}


def _union(ranges: Iterable[Range]) -> list[Range]:
    """Sorted, disjoint, merged."""
    out: list[Range] = []
    for a, b in sorted(ranges):
        if out and a <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def _minus(pieces: list[Range], cut: list[Range]) -> list[tuple[tuple[int, int], int, int]]:
    """Each piece minus the disjoint sorted ranges in cut: ((piece index, part start), first, last), by first."""
    order = sorted(range(len(pieces)), key=lambda i: pieces[i][0])
    out = []
    j = 0
    for i in order:
        g0, g1 = pieces[i]
        while j < len(cut) and cut[j][1] < g0:
            j += 1
        k, x = j, g0
        while x <= g1:
            if k < len(cut) and cut[k][0] <= x:
                x = max(x, cut[k][1] + 1)
                k += 1
                continue
            end = min(g1, cut[k][0] - 1) if k < len(cut) else g1
            out.append(((i, x), x, end))
            x = end + 1
    return out


def _assign(parts: list[tuple[tuple[int, int], int, int]], losses: list[tuple[int, int, str]],
            top_in: Mapping[Range, int | None]) -> list[tuple[tuple[int, int], int, str, int, int]]:
    """Runs (part key, loss rank, lost|unknown|rest, first, last): each seq of the parts goes to the narrowest
    loss range holding it (rank = its index in `losses`, narrowest first; len(losses) for none)."""
    tops = [b if r in EXACT else None if r in VAGUE else top_in.get((a, b)) for a, b, r in losses]
    starts = sorted(range(len(losses)), key=lambda r: losses[r][0])
    heap: list[tuple[int, int]] = []  # (rank, last) of the ranges begun; the narrowest on top
    runs: list[tuple[tuple[int, int], int, str, int, int]] = []

    def emit(key: tuple[int, int], rank: int, what: str, p0: int, p1: int) -> None:
        if runs and runs[-1][:3] == (key, rank, what) and runs[-1][4] + 1 == p0:
            runs[-1] = (key, rank, what, runs[-1][3], p1)
        else:
            runs.append((key, rank, what, p0, p1))

    j = 0
    for key, p0, p1 in parts:  # ascending, disjoint
        x = p0
        while x <= p1:
            while j < len(starts) and losses[starts[j]][0] <= x:
                heapq.heappush(heap, (starts[j], losses[starts[j]][1]))
                j += 1
            while heap and heap[0][1] < x:
                heapq.heappop(heap)
            nxt = losses[starts[j]][0] - 1 if j < len(starts) else p1
            if not heap:
                end = min(p1, nxt)
                emit(key, len(losses), "rest", x, end)
            else:
                rank, last = heap[0]
                end, top = min(p1, last, nxt), tops[rank]
                cut = min(end, top) if top is not None and top >= x else x - 1
                if cut >= x:
                    emit(key, rank, "lost", x, cut)
                if cut < end:
                    emit(key, rank, "unknown", cut + 1, end)
            x = end + 1
    return runs


def explain_gaps(raw: list[tuple[int, int]], skips: list[tuple[int, int]], epochs: set[int]) -> list[list[int]]:
    """Missing seq ranges minus those announced as dropped and minus jumps to a new epoch."""
    return classify(raw, [(a, b, "budget") for a, b in skips], epochs, {})["gaps"]
