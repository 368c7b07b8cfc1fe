"""Rebuild the cached per-frame signals of the counting evaluation set from the sequences' frames.

For every sequence in lines.json it writes, next to its gt.txt:
- dets.csv: the shipped detector's (models/yolox_nano) person boxes on every frame, at a confidence
  floor of 0.1 (the replay applies the detector's own threshold; NMS is greedy by score, so filtering
  after it gives the same boxes as filtering before);
- motion.csv: per frame and per line, the motion value the gate's MotionDetector gives on that line's
  region of interest (the difference to the previous frame; 1.0 on the first frame).

    python bench/data/regenerate.py --frames tud_campus=../shared/data/tud_campus/img1 \\
                                    --frames pets09_s3mf1=/path/to/PETS/S3-MF1/img
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import cv2

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from edge_agent.vision.counting import LineCounter  # noqa: E402
from edge_agent.vision.detector import OnnxDetector, default_model_dir  # noqa: E402
from edge_agent.vision.gating import MotionDetector  # noqa: E402
from edge_agent.vision.pipeline import line_roi  # noqa: E402

HERE = Path(__file__).resolve().parent
CONF_FLOOR = 0.1
ROI_PAD = 48  # Pipeline's motion ROI pad with the default GateConfig (near_line_px = 0)


def frames_of(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))


def regenerate(name: str, folder: Path, spec: dict, det: OnnxDetector) -> None:
    w, h = spec["size"]
    counters = {k: LineCounter(k, (v[0], v[1]), (v[2], v[3])) for k, v in spec["lines"].items()}
    motions = {k: MotionDetector(line_roi([ln], w, h, ROI_PAD)) for k, ln in counters.items()}
    files = frames_of(folder)
    if len(files) != spec["frames"]:
        raise SystemExit(f"{name}: {len(files)} frames in {folder}, lines.json says {spec['frames']}")
    out = HERE / name
    with (out / "dets.csv").open("w", newline="") as fd, (out / "motion.csv").open("w", newline="") as fm:
        wd, wm = csv.writer(fd), csv.writer(fm)
        wd.writerow(["frame", "x1", "y1", "x2", "y2", "score"])
        wm.writerow(["frame", *motions])
        for i, path in enumerate(files, 1):
            image = cv2.imread(str(path))
            if image is None or image.shape[:2] != (h, w):
                raise SystemExit(f"{path}: unreadable or not {w}x{h}")
            for x1, y1, x2, y2, s in det.detect(image).tolist():
                wd.writerow([i, f"{x1:.2f}", f"{y1:.2f}", f"{x2:.2f}", f"{y2:.2f}", f"{s:.4f}"])
            wm.writerow([i, *(f"{m(image):.6f}" for m in motions.values())])
    print(f"{name}: {len(files)} frames cached")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", action="append", required=True, help="NAME=FOLDER of the sequence's frames.")
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
