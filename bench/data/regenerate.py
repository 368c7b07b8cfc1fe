"""Rebuild the cached per-frame signals of the counting evaluation set from the sequences' frames.

For every sequence in lines.json it writes, next to its gt.txt:
- dets.csv: the shipped detector's (models/yolox_nano) person boxes on every frame, at a confidence
  floor of 0.1 (the replay applies the detector's own threshold; NMS is greedy by score, so filtering
  after it gives the same boxes as filtering before);
- motion.csv: per frame and per line, the motion value the gate's MotionDetector gives on that line's
  region of interest (the difference to the previous frame; 1.0 on the first frame).

    python bench/data/regenerate.py --frames tud_campus=../shared/data/tud_campus/img1 \\
                                    --frames pets09_s3mf1=/path/to/PETS/S3-MF1/img \\
                                    --frames tud_stadtmitte=/path/to/TUD-Stadtmitte.mp4 \\
                                    --frames pets09_s2l1=../shared/data/pets09_s2l1_view1_480x360.avi
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from edge_agent.vision.counting import LineCounter  # noqa: E402
from edge_agent.vision.detector import OnnxDetector, default_model_dir  # noqa: E402
from edge_agent.vision.gating import MotionDetector  # noqa: E402
from edge_agent.vision.pipeline import line_roi  # noqa: E402

HERE = Path(__file__).resolve().parent
CONF_FLOOR = 0.1
ROI_PAD = 48  # Pipeline's motion ROI pad with the default GateConfig (near_line_px = 0)


def frames_of(source: Path) -> Iterator[tuple[str, np.ndarray | None]]:
    """(label, image) of every frame of a folder of images or a video file, in order."""
    if source.is_dir():
        for p in sorted(p for p in source.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png")):
            yield str(p), cv2.imread(str(p))
        return
    cap = cv2.VideoCapture(str(source))
    n = 0
    while True:
        ok, image = cap.read()
        if not ok:
            break
        n += 1
        yield f"{source} frame {n}", image
    cap.release()


def regenerate(name: str, folder: Path, spec: dict, det: OnnxDetector) -> None:
    w, h = spec["size"]
    counters = {k: LineCounter(k, (v[0], v[1]), (v[2], v[3])) for k, v in spec["lines"].items()}
    motions = {k: MotionDetector(line_roi([ln], w, h, ROI_PAD)) for k, ln in counters.items()}
    out = HERE / name
    n = 0
    with (out / "dets.csv").open("w", newline="") as fd, (out / "motion.csv").open("w", newline="") as fm:
        wd, wm = csv.writer(fd), csv.writer(fm)
        wd.writerow(["frame", "x1", "y1", "x2", "y2", "score"])
        wm.writerow(["frame", *motions])
        for i, (label, image) in enumerate(frames_of(folder), 1):
            if image is None or image.shape[:2] != (h, w):
                raise SystemExit(f"{label}: unreadable or not {w}x{h}")
            n = i
            for x1, y1, x2, y2, s in det.detect(image).tolist():
                wd.writerow([i, f"{x1:.2f}", f"{y1:.2f}", f"{x2:.2f}", f"{y2:.2f}", f"{s:.4f}"])
            wm.writerow([i, *(f"{m(image):.6f}" for m in motions.values())])
    if n != spec["frames"]:
        raise SystemExit(f"{name}: {n} frames in {folder}, lines.json says {spec['frames']}")
    print(f"{name}: {n} frames cached")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", action="append", required=True,
                    help="NAME=SOURCE: the sequence's folder of frames or its video file.")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    spec = json.loads((HERE / "lines.json").read_text())
    det = OnnxDetector(default_model_dir(), threads=a.threads, conf=CONF_FLOOR)
    for item in a.frames:
        name, _, folder = item.partition("=")
        if name not in spec:
            raise SystemExit(f"{name}: not in lines.json ({', '.join(spec)})")
        regenerate(name, Path(folder), spec[name], det)


if __name__ == "__main__":
    main()
