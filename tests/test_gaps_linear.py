"""`/devices` is linear in gaps x skips (issue 10): the sweep in hub/gaps.classify gives what the quadratic
accounting gave, on random holes and announcements, and stays fast for a device with 10,000 of each."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from hub.gaps import EXACT, EXPLAINED, VAGUE, Range, classify, intersect, loss_ranges, subtract

REASONS = ["budget", "restart", "power_loss", "rewind", "quarantined", "quarantine_unread", "mystery"]


def reference(holes: Iterable[Range], skips: Iterable[tuple[int, int, str]], epochs: set[int],
             top_in: Mapping[Range, int | None], received: Range | None = None) -> dict[str, list[Any]]:
    """The quadratic accounting the hub had before issue 10 (pieces x ranges): the oracle.
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



def _holes(seqs: list[int]) -> list[Range]:
    s = sorted(set(seqs))
    return [(a + 1, b - 1) for a, b in zip(s, s[1:], strict=False) if b > a + 1]


def _top_in(seqs: list[int], skips: list[tuple[int, int, str]]) -> dict[Range, int | None]:
    return {(a, b): max((s for s in seqs if a <= s <= b), default=None) for a, b, _ in loss_ranges(skips)}


@given(st.lists(st.integers(1, 120), min_size=0, max_size=30),
       st.lists(st.tuples(st.integers(1, 130), st.integers(0, 40), st.sampled_from(REASONS)), max_size=12),
       st.sets(st.integers(1, 130), max_size=3))
@settings(max_examples=800, deadline=None)
def test_the_sweep_gives_what_the_quadratic_accounting_gave(seqs: list[int], raw: list[tuple[int, int, str]],
                                                            epochs: set[int]) -> None:
    skips = list({(a, a + w): r for a, w, r in raw}.items())
    skips_r = [(a, b, r) for (a, b), r in skips]
    received = (min(seqs), max(seqs)) if seqs else None
    args = (_holes(seqs), skips_r, epochs, _top_in(seqs, skips_r), received)
    want = reference(*args)
    # The quadratic version also reported empty ranges (first > last) where a range's top was its last seq.
    want = {k: [x for x in v if not isinstance(x, dict) or x["first"] <= x["last"]] for k, v in want.items()}
    assert classify(*args) == want


def test_ten_thousand_gaps_and_skips_take_well_under_a_second() -> None:
    n = 10_000
    E = 1_800_000_000_000_000
    seqs = [E + 3 * k for k in range(n + 1)]
    holes = [(s + 1, s + 2) for s in seqs[:-1]]
    skips = [(s + 1, s + 2 + (k % 3 == 0), "budget" if k % 2 else "power_loss") for k, s in enumerate(seqs[:-1])]
    top_in = {(a, b): None for a, b, _ in loss_ranges(skips)}
    t0 = time.perf_counter()
    out = classify(holes, skips, set(), top_in, (seqs[0], seqs[-1]))
    dt = time.perf_counter() - t0
    assert len(out["unknown"]) == n // 2 and out["gaps"] == []
    assert dt < 1.0, f"{dt:.2f} s for {n} gaps and {n} skips"  # was 23 s for /devices (bench/hub_devices.py)
