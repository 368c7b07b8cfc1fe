"""Counting accuracy on the evaluation set in bench/data/ (real sequences with MOT ground truth).

For every line of bench/data/lines.json, on the same cached YOLOX-nano detections:
- truth: the referee (edge_agent/vision/truth.py, ground truth alone, N = 3 frames);
- ours: the project's Pipeline, gated (stride 4, motion gate replayed from the cached motion values)
  and every-frame;
- anchor: the usual pipeline, `trackers` ByteTrack + supervision LineZone on the box bottom-centre.

Matching: per line and direction, a counted crossing matches a true one at most 1 s (fps frames)
away, one to one (Hungarian on the frame gap). recall = matched / true crossings, precision =
matched / counted crossings, summed over all lines and both directions (gated mode, the default).

Ends with: RESULT lines= exact_ours= exact_anchor= abs_err_ours= abs_err_anchor= recall_ours=
precision_ours= (plus the every-frame figures, the anchor's recall/precision and the detector runs).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.optimize import linear_sum_assignment

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edge_agent.vision.counting import LineCounter  # noqa: E402
from edge_agent.vision.evaluate import load_mot  # noqa: E402
from edge_agent.vision.gating import GateConfig  # noqa: E402
from edge_agent.vision.pipeline import Pipeline  # noqa: E402
from edge_agent.vision.truth import true_crossings  # noqa: E402

DATA = ROOT / "bench" / "data"
DET_CONF = 0.3  # OnnxDetector's default threshold: the replay sees what the live detector returns

Events = list[tuple[str, int]]  # (direction, frame)


@dataclass
class Sequence:
    name: str
    size: tuple[int, int]
    fps: float
    frames: int
    lines: dict[str, tuple[float, float, float, float]]
    gt: dict
    dets: dict[int, np.ndarray]
    motion: dict[str, dict[int, float]]


def load(name: str, spec: dict) -> Sequence:
    folder = DATA / name
    dets: dict[int, list[list[float]]] = defaultdict(list)
    with (folder / "dets.csv").open() as f:
        for row in csv.DictReader(f):
            dets[int(row["frame"])].append([float(row[k]) for k in ("x1", "y1", "x2", "y2", "score")])
    motion: dict[str, dict[int, float]] = defaultdict(dict)
    with (folder / "motion.csv").open() as f:
        for row in csv.DictReader(f):
            for k, v in row.items():
                if k != "frame":
                    motion[k][int(row["frame"])] = float(v)
    arrays = {i: np.array(v, dtype=np.float32).reshape(-1, 5) for i, v in dets.items()}
    return Sequence(name, tuple(spec["size"]), float(spec["fps"]), int(spec["frames"]),
                    {k: tuple(v) for k, v in spec["lines"].items()}, load_mot(folder / "gt.txt"), arrays, motion)


class CachedDetector:
    """The detector, replayed: `detect(frame_index)` returns that frame's cached boxes."""

    def __init__(self, dets: dict[int, np.ndarray], conf: float = DET_CONF) -> None:
        self.dets, self.conf = dets, conf

    def detect(self, frame: int) -> np.ndarray:  # type: ignore[override]
        d = self.dets.get(frame, np.zeros((0, 5), np.float32))
        return d[d[:, 4] >= self.conf]


class CachedMotion:
    """The gate's MotionDetector, replayed: the cached difference to the previous frame, or 1.0 when
    the pipeline dropped its reference frame (`prev = None`), exactly as the live one behaves."""

    def __init__(self, values: dict[int, float]) -> None:
        self.values = values
        self.prev: object | None = None

    def __call__(self, frame: int) -> float:
        had, self.prev = self.prev, frame
        return 1.0 if had is None else self.values[frame]


def run_ours(seq: Sequence, name: str, gated: bool) -> tuple[Events, int]:
    x1, y1, x2, y2 = seq.lines[name]
    line = LineCounter(name, (x1, y1), (x2, y2))
    pipe = Pipeline(CachedDetector(seq.dets), [line], gate=GateConfig(stride=4) if gated else None)  # type: ignore[arg-type]
    if gated:
        pipe.motion = CachedMotion(seq.motion[name])  # type: ignore[assignment]
    events: Events = []
    for i in range(1, seq.frames + 1):
        r = pipe.process(lambda i=i: i, i)  # type: ignore[arg-type, return-value]
        events += [(c.direction, c.frame) for c in r.crossings]  # the frame it crossed, not when confirmed
    events += [(c.direction, c.frame) for c in pipe.close(seq.frames)]
    return events, pipe.stats.detections


def run_anchor(seq: Sequence, name: str) -> Events:
    import supervision as sv
    from trackers import ByteTrackTracker

    x1, y1, x2, y2 = seq.lines[name]
    zone = sv.LineZone(sv.Point(x1, y1), sv.Point(x2, y2), triggering_anchors=[sv.Position.BOTTOM_CENTER])
    flip = _anchor_in_is_our_out(seq.lines[name])
    tracker = ByteTrackTracker(frame_rate=seq.fps)
    events: Events = []
    for i in range(1, seq.frames + 1):
        d = CachedDetector(seq.dets).detect(i)
        dets = sv.Detections(xyxy=d[:, :4].astype(np.float32), confidence=d[:, 4], class_id=np.zeros(len(d), int))
        tracked = tracker.update(dets)
        crossed_in, crossed_out = zone.trigger(tracked)
        n_in, n_out = int(np.sum(crossed_in)), int(np.sum(crossed_out))
        if flip:
            n_in, n_out = n_out, n_in
        events += [("in", i)] * n_in + [("out", i)] * n_out
    return events


def _anchor_in_is_our_out(pts: tuple[float, float, float, float]) -> bool:
    """LineZone's own orientation, found by walking one box across the line from our side > 0."""
    import supervision as sv

    x1, y1, x2, y2 = pts
    line = LineCounter("probe", (x1, y1), (x2, y2))
    mx, my = (x1 + x2) / 2, (y1 + y2) / 2
    nx, ny = -(y2 - y1) / line.length, (x2 - x1) / line.length  # unit normal towards side > 0
    zone = sv.LineZone(sv.Point(x1, y1), sv.Point(x2, y2), triggering_anchors=[sv.Position.BOTTOM_CENTER])
    for s in (20, -20):
        bx, by = mx + s * nx, my + s * ny
        zone.trigger(sv.Detections(xyxy=np.array([[bx - 5, by - 30, bx + 5, by]], np.float32),
                                   tracker_id=np.array([1]), class_id=np.array([0])))
    if zone.in_count + zone.out_count != 1:
        raise RuntimeError("could not find LineZone's orientation")
    return zone.out_count == 1


def match(truth: Events, counted: Events, tol: float) -> int:
    """Crossings matched one to one per direction, at most `tol` frames apart."""
    total = 0
    for direction in ("in", "out"):
        t = [f for d, f in truth if d == direction]
        c = [f for d, f in counted if d == direction]
        if not t or not c:
            continue
        gap = np.abs(np.subtract.outer(np.array(t, float), np.array(c, float)))
        cost = np.where(gap <= tol, gap, 1e6)
        rows, cols = linear_sum_assignment(cost)
        total += int(np.sum(cost[rows, cols] < 1e6))
    return total


def tally(events: Events) -> tuple[int, int]:
    return sum(d == "in" for d, _ in events), sum(d == "out" for d, _ in events)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--no-anchor", action="store_true", help="Skip the supervision + trackers pipeline.")
    ap.add_argument("--sequence", action="append", help="Only these sequences of lines.json (repeatable).")
    a = ap.parse_args()
    spec = json.loads((DATA / "lines.json").read_text())
    if a.sequence:
        spec = {k: v for k, v in spec.items() if k in a.sequence}
    tot: dict[str, float] = defaultdict(float)
    print(f"{'sequence/line':24} {'truth':>7} {'gated':>7} {'every':>7} {'anchor':>7}")
    for name, s in spec.items():
        seq = load(name, s)
        for ln in seq.lines:
            x1, y1, x2, y2 = seq.lines[ln]
            truth: Events = [(c.direction, c.frame) for c in true_crossings(seq.gt, (x1, y1), (x2, y2))]
            gated, ran_g = run_ours(seq, ln, gated=True)
            every, ran_e = run_ours(seq, ln, gated=False)
            anchor = [] if a.no_anchor else run_anchor(seq, ln)
            tt, tg, te, ta = tally(truth), tally(gated), tally(every), tally(anchor)
            err = {k: abs(v[0] - tt[0]) + abs(v[1] - tt[1]) for k, v in (("g", tg), ("e", te), ("a", ta))}
            tot["lines"] += 1
            tot["truth"] += len(truth)
            for k, ev in (("g", gated), ("e", every), ("a", anchor)):
                tot[f"err_{k}"] += err[k]
                tot[f"exact_{k}"] += err[k] == 0
                tot[f"n_{k}"] += len(ev)
                tot[f"m_{k}"] += match(truth, ev, seq.fps)
            tot["ge_diff_max"] = max(tot["ge_diff_max"], abs(tg[0] - te[0]), abs(tg[1] - te[1]))
            tot["ran_g"] += ran_g
            tot["ran_e"] += ran_e
            print(f"{name + '/' + ln:24} {tt[0]:>3}/{tt[1]:<3} {tg[0]:>3}/{tg[1]:<3} {te[0]:>3}/{te[1]:<3} "
                  f"{ta[0]:>3}/{ta[1]:<3}" + ("" if err["g"] == 0 else f"  err {err['g']}"))

    def ratio(k: str, n: str) -> float:
        return tot[k] / tot[n] if tot[n] else 1.0

    print(f"true crossings {int(tot['truth'])}; detector ran on {int(tot['ran_g'])} frames gated vs "
          f"{int(tot['ran_e'])} every-frame (summed over lines)")
    print(f"RESULT lines={int(tot['lines'])} exact_ours={int(tot['exact_g'])} exact_anchor={int(tot['exact_a'])} "
          f"abs_err_ours={int(tot['err_g'])} abs_err_anchor={int(tot['err_a'])} "
          f"recall_ours={ratio('m_g', 'truth'):.3f} precision_ours={ratio('m_g', 'n_g'):.3f} "
          f"abs_err_every_frame={int(tot['err_e'])} recall_every_frame={ratio('m_e', 'truth'):.3f} "
          f"precision_every_frame={ratio('m_e', 'n_e'):.3f} recall_anchor={ratio('m_a', 'truth'):.3f} "
          f"precision_anchor={ratio('m_a', 'n_a'):.3f} gated_vs_every_max_diff={int(tot['ge_diff_max'])} "
          f"detections_gated={int(tot['ran_g'])} detections_every_frame={int(tot['ran_e'])}")


if __name__ == "__main__":
    main()
