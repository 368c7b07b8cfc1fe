"""Annotated frames for technicians: boxes, track ids, the lines and running counts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edge_agent.vision.counting import LineCounter
from edge_agent.vision.tracker import Track


def draw(image: np.ndarray, tracks: list[Track], lines: list[LineCounter]) -> np.ndarray:
    import cv2

    out = image.copy()
    for t in tracks:
        x1, y1, x2, y2 = (int(v) for v in t.box)
        colour = (0, 200, 0) if t.confirmed else (0, 200, 255)
        cv2.rectangle(out, (x1, y1), (x2, y2), colour, 2)
        cv2.putText(out, str(t.id), (x1, max(12, y1 - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.5, colour, 1)
        cv2.circle(out, ((x1 + x2) // 2, y2), 3, colour, -1)
    for i, ln in enumerate(lines):
        a, b = (int(ln.a[0]), int(ln.a[1])), (int(ln.b[0]), int(ln.b[1]))
        cv2.line(out, a, b, (255, 0, 255), 2)
        cv2.putText(out, f"{ln.name}: in {ln.counts['in']} out {ln.counts['out']}", (8, 20 + 20 * i),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 0, 255), 2)
    return out


class Writer:
    """Writes an .mp4/.avi video, or numbered PNGs into a folder."""

    def __init__(self, target: Path, fps: float = 10.0) -> None:
        self.target, self.fps = target, fps
        self.video: Any = None
        self.n = 0
        if target.suffix.lower() not in (".mp4", ".avi"):
            target.mkdir(parents=True, exist_ok=True)

    def write(self, image: np.ndarray) -> None:
        import cv2

        self.n += 1
        if self.target.suffix.lower() in (".mp4", ".avi"):
            if self.video is None:
                h, w = image.shape[:2]
                code = "mp4v" if self.target.suffix.lower() == ".mp4" else "MJPG"
                fourcc = cv2.VideoWriter.fourcc(*code)
                self.video = cv2.VideoWriter(str(self.target), fourcc, self.fps, (w, h))
            self.video.write(image)
        else:
            cv2.imwrite(str(self.target / f"{self.n:06d}.png"), image)

    def close(self) -> None:
        if self.video is not None:
            self.video.release()
