"""Evaluation on MOT-format sequences: true crossings from ground truth, MOTA and IDF1."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
from scipy.optimize import linear_sum_assignment

from edge_agent.vision.counting import LineCounter
from edge_agent.vision.geometry import iou_matrix

Boxes = dict[int, dict[int, np.ndarray]]  # frame -> track id -> xyxy


def load_mot(path: Path) -> Boxes:
    """gt.txt / results in MOT layout: frame, id, x, y, w, h, [conf, class, visibility]."""
    out: Boxes = defaultdict(dict)
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.replace(" ", "").split(",")
        try:
            f, i, x, y, w, h = (float(v) for v in parts[:6])
        except ValueError as err:
            raise ValueError(f"{path}:{n}: not a MOT row: {line[:60]!r}") from err
        if len(parts) > 6 and parts[6] not in ("-1", "1") and float(parts[6]) == 0:
            continue  # MOT16+ marks ignored boxes with conf 0
        out[int(f)][int(i)] = np.array([x, y, x + w, y + h])
    return out


def count_crossings(tracks: Boxes, line: LineCounter) -> dict[str, int]:
    """Our counting rule replayed on boxes (all tracks confirmed). Not the referee: see vision/truth.py."""
    frames = sorted(tracks)
    alive: set[int] = set()
    for f in frames:
        now = set(tracks[f])
        for tid in alive - now:
            line.finish(tid, f)
        for tid, b in tracks[f].items():
            line.update(tid, float((b[0] + b[2]) / 2), float(b[3]), f, confirmed=True)
        alive = now
    return dict(line.counts)


def mot_metrics(gt: Boxes, hyp: Boxes, iou_thr: float = 0.5) -> dict[str, float]:
    """CLEAR MOTA (FN, FP, ID switches) and IDF1 (global identity matching), as in py-motmetrics."""
    fn = fp = idsw = n_gt = 0
    last_match: dict[int, int] = {}
    pair_frames: dict[tuple[int, int], int] = defaultdict(int)
    gt_total: dict[int, int] = defaultdict(int)
    hyp_total: dict[int, int] = defaultdict(int)
    for f in sorted(set(gt) | set(hyp)):
        g, h = gt.get(f, {}), hyp.get(f, {})
        gids, hids = list(g), list(h)
        n_gt += len(gids)
        for i in gids:
            gt_total[i] += 1
        for j in hids:
            hyp_total[j] += 1
        if not gids or not hids:
            fn += len(gids)
            fp += len(hids)
            continue
        iou = iou_matrix(np.array([g[i] for i in gids]), np.array([h[j] for j in hids]))
        for a in range(len(gids)):
            for b in range(len(hids)):
                if iou[a, b] >= iou_thr:
                    pair_frames[(gids[a], hids[b])] += 1
        # CLEAR: keep last frame's correspondences when still valid, then Hungarian on the rest.
        cost = np.where(iou >= iou_thr, 1 - iou, 1e6)
        for a, gid in enumerate(gids):
            if gid in last_match and last_match[gid] in h:
                b = hids.index(last_match[gid])
                if iou[a, b] >= iou_thr:
                    cost[a, b] = -1.0
        rows, cols = linear_sum_assignment(cost)
        matched = [(r, c) for r, c in zip(rows, cols, strict=True) if cost[r, c] < 1e5]
        for r, c in matched:
            gid, hid = gids[r], hids[c]
            if gid in last_match and last_match[gid] != hid:
                idsw += 1
            last_match[gid] = hid
        fn += len(gids) - len(matched)
        fp += len(hids) - len(matched)
    mota = 1 - (fn + fp + idsw) / max(n_gt, 1)
    g_ids, h_ids = sorted(gt_total), sorted(hyp_total)
    if g_ids and h_ids:
        w = np.zeros((len(g_ids), len(h_ids)))
        for (gi, hi), n in pair_frames.items():
            w[g_ids.index(gi), h_ids.index(hi)] = n
        r, c = linear_sum_assignment(-w)
        idtp = float(w[r, c].sum())
    else:
        idtp = 0.0
    idf1 = 2 * idtp / max(sum(gt_total.values()) + sum(hyp_total.values()), 1)
    return {"mota": mota, "idf1": idf1, "fn": fn, "fp": fp, "idsw": idsw, "gt": n_gt}
