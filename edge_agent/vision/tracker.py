"""ByteTrack-style multi-object tracker (pure numpy/scipy).

High-score detections are matched first (IoU, Hungarian), then low-score ones rescue tracks that would
otherwise be lost (occlusions). A track is *tentative* until matched on `min_hits` detection frames;
only confirmed tracks may count. `step(None)` advances the Kalman filters without detections, which
is how the motion-gated pipeline keeps tracks alive on skipped frames.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

from edge_agent.vision.geometry import iou_matrix

_F = np.eye(8)
_F[:4, 4:] = np.eye(4)
_H = np.eye(4, 8)
_DIAG = np.diag_indices(8)
_Q_SCALE = np.array([1 / 20, 1 / 20, 0, 1 / 20, 1 / 160, 1 / 160, 0, 1 / 160])
_Q_CONST = np.array([0, 0, 1e-2, 0, 0, 0, 1e-5, 0])


def _xyxy_to_xyah(b: np.ndarray) -> np.ndarray:
    w, h = b[2] - b[0], b[3] - b[1]
    return np.array([b[0] + w / 2, b[1] + h / 2, w / max(h, 1e-6), h])


@dataclass
class Track:
    id: int
    mean: np.ndarray
    cov: np.ndarray
    score: float
    hits: int = 1
    age: int = 0  # frames since the last matched detection
    confirmed: bool = False
    lost: bool = False
    history: list[tuple[int, float, float]] = field(default_factory=list)  # (frame, x, y) bottom-centre
    box: np.ndarray = field(init=False)  # x1, y1, x2, y2 of the current state (kept in step with mean)

    def __post_init__(self) -> None:
        self._refresh()

    def _refresh(self) -> None:
        cx, cy, a, h = self.mean[:4].tolist()
        w = a * h
        self.box = np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])

    def predict(self) -> None:
        h = self.mean[3]
        if self.mean[7] + h <= 0:
            self.mean[7] = 0
        self.mean = _F @ self.mean
        self.cov = _F @ self.cov @ _F.T
        self.cov[_DIAG] += (_Q_SCALE * h + _Q_CONST) ** 2  # process noise scaled by box height
        self.age += 1
        self._refresh()

    def update(self, det: np.ndarray) -> None:
        z = _xyxy_to_xyah(det[:4])
        h = self.mean[3]
        r = np.diag(np.r_[h / 20, h / 20, 1e-1, h / 20] ** 2)
        s = _H @ self.cov @ _H.T + r
        k = self.cov @ _H.T @ np.linalg.inv(s)
        self.mean = self.mean + k @ (z - _H @ self.mean)
        self.cov = (np.eye(8) - k @ _H) @ self.cov
        self.score = float(det[4])
        self._refresh()
        self.hits += 1
        self.age = 0
        self.lost = False


def _new_track(tid: int, det: np.ndarray) -> Track:
    mean = np.r_[_xyxy_to_xyah(det[:4]), np.zeros(4)]
    h = mean[3]
    cov = np.diag(np.r_[[h / 10, h / 10, 1e-2, h / 10], [h / 16, h / 16, 1e-5, h / 16]] ** 2)
    return Track(tid, mean, cov, float(det[4]))


def _match(tracks: list[Track], dets: np.ndarray, min_iou: float) -> tuple[list[tuple[int, int]], list[int], list[int]]:
    if not tracks or not len(dets):
        return [], list(range(len(tracks))), list(range(len(dets)))
    iou = iou_matrix(np.array([t.box for t in tracks]), dets[:, :4])
    rows, cols = linear_sum_assignment(-iou)
    pairs = [(r, c) for r, c in zip(rows, cols, strict=True) if iou[r, c] >= min_iou]
    mr, mc = {r for r, _ in pairs}, {c for _, c in pairs}
    return pairs, [i for i in range(len(tracks)) if i not in mr], [j for j in range(len(dets)) if j not in mc]


def _match_centres(tracks: list[Track], dets: np.ndarray, free: list[int],
                   max_rel: float) -> tuple[list[tuple[int, int]], list[int], list[int]]:
    """Hungarian on centre distance / track height among the detections still free."""
    if not tracks or not free or max_rel <= 0:
        return [], list(range(len(tracks))), free
    tb = np.array([t.box for t in tracks])
    db = dets[free, :4]
    tc = (tb[:, :2] + tb[:, 2:4]) / 2
    dc = (db[:, :2] + db[:, 2:4]) / 2
    h = np.maximum(tb[:, 3] - tb[:, 1], 1.0)
    cost = np.linalg.norm(tc[:, None] - dc[None], axis=2) / h[:, None]
    rows, cols = linear_sum_assignment(cost)
    pairs = [(r, free[c]) for r, c in zip(rows, cols, strict=True) if cost[r, c] <= max_rel]
    used_t, used_d = {r for r, _ in pairs}, {d for _, d in pairs}
    return pairs, [i for i in range(len(tracks)) if i not in used_t], [d for d in free if d not in used_d]


@dataclass
class TrackerConfig:
    high: float = 0.5  # first association pass
    low: float = 0.1  # second pass (occluded people)
    new_track: float = 0.45  # a detection must be this sure to start a track (0.6 left small people untracked)
    match_iou: float = 0.2
    low_match_iou: float = 0.5
    centre_dist: float = 0.5  # fallback match: centre distance up to this × box height (0 = off)
    min_hits: int = 2  # detection frames before a track is confirmed (3 lost people who appear near a line)
    max_age: int = 30  # frames a lost track is kept for re-association


class ByteTracker:
    def __init__(self, cfg: TrackerConfig | None = None) -> None:
        self.cfg = cfg or TrackerConfig()
        self.tracks: list[Track] = []
        self.frame = 0
        self._next_id = 1

    def step(self, dets: np.ndarray | None) -> list[Track]:
        """Advance one frame; dets (N,5) or None on a frame without detection. Returns live tracks."""
        self.frame += 1
        for t in self.tracks:
            t.predict()
        if dets is not None:
            self._associate(dets)
        for t in self.tracks:
            if not t.lost:
                b = t.box
                t.history.append((self.frame, float((b[0] + b[2]) / 2), float(b[3])))
                del t.history[:-64]
        return [t for t in self.tracks if not t.lost]

    def _associate(self, dets: np.ndarray) -> None:
        c = self.cfg
        high = dets[dets[:, 4] >= c.high]
        low = dets[(dets[:, 4] >= c.low) & (dets[:, 4] < c.high)]
        confirmed = [t for t in self.tracks if t.confirmed]
        tentative = [t for t in self.tracks if not t.confirmed]
        pairs, rest_t, rest_d = _match(confirmed, high, c.match_iou)
        for ti, di in pairs:
            confirmed[ti].update(high[di])
        # After skipped frames a predicted box may overlap its person too little for IoU: match what
        # is left by centre distance relative to box height (catches the ID switches gaps cause).
        left = [confirmed[i] for i in rest_t]
        pairs_c, rest_c, rest_d = _match_centres(left, high, rest_d, c.centre_dist)
        for ti, di in pairs_c:
            left[ti].update(high[di])
        remaining = [left[i] for i in rest_c if not left[i].lost]
        pairs2, rest_t2, _ = _match(remaining, low, c.low_match_iou)
        for ti, di in pairs2:
            remaining[ti].update(low[di])
        for i in rest_t2:
            remaining[i].lost = True
        high = high[rest_d]
        pairs3, rest_tent, rest_d3 = _match(tentative, high, c.match_iou)
        # A new track has no velocity yet: after skipped frames its box may have moved off the person.
        unmatched = [tentative[i] for i in rest_tent]
        pairs4, rest_u, rest_d3 = _match_centres(unmatched, high, rest_d3, c.centre_dist)
        found = [(tentative[ti], high[di]) for ti, di in pairs3] + [(unmatched[ti], high[di]) for ti, di in pairs4]
        for t, det in found:
            t.update(det)
            if t.hits >= c.min_hits:
                t.confirmed = True
        dead = {id(unmatched[i]) for i in rest_u}
        for di in rest_d3:
            if high[di, 4] >= c.new_track:
                self.tracks.append(_new_track(self._next_id, high[di]))
                self._next_id += 1
        self.tracks = [t for t in self.tracks if id(t) not in dead and t.age <= c.max_age]
        for t in self.tracks:
            if t.age > 0 and t.confirmed:
                t.lost = True
