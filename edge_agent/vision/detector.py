"""Object detector plugins. `OnnxDetector` runs YOLOX (or YOLOv8-style) COCO ONNX models with onnxruntime,
keeping the classes a camera asks for (people by default, vehicles for a car park).

Raises ModelError for a missing model, a checksum mismatch or an unavailable provider.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Protocol

import numpy as np

from edge_agent.vision.geometry import Letterbox, nms, xywh_to_xyxy
from edge_agent.vision.model import Manifest, ModelError

logger = logging.getLogger(__name__)

PERSON = 0


class Detector(Protocol):
    def detect(self, frame: np.ndarray) -> np.ndarray:
        """Person boxes in image pixels as an (N, 5) array: x1, y1, x2, y2, score."""
        ...


def decode_yolox(out: np.ndarray, size: int, strides: tuple[int, ...] = (8, 16, 32),
                 classes: tuple[int, ...] = (PERSON,)) -> tuple[np.ndarray, np.ndarray]:
    """Raw YOLOX output (A, 5+C) → (xyxy boxes in input pixels, scores of the best of `classes`)."""
    grids, mult = [], []
    for s in strides:
        n = size // s
        ys, xs = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
        grids.append(np.stack((xs, ys), -1).reshape(-1, 2))
        mult.append(np.full((n * n, 1), s))
    grid = np.concatenate(grids).astype(np.float32)
    stride = np.concatenate(mult).astype(np.float32)
    if len(grid) != len(out):
        raise ModelError(f"YOLOX output has {len(out)} anchors, expected {len(grid)} for input {size}")
    xy = (out[:, :2] + grid) * stride
    wh = np.exp(np.clip(out[:, 2:4], -10, 10)) * stride
    scores = out[:, 4] * out[:, [5 + c for c in classes]].max(1)
    return xywh_to_xyxy(np.concatenate([xy, wh], 1)), scores


def decode_yolov8(out: np.ndarray, n_classes: int = 80,
                  classes: tuple[int, ...] = (PERSON,)) -> tuple[np.ndarray, np.ndarray]:
    """YOLOv8-style output (4+C, A) or (A, 4+C) with cx, cy, w, h and class scores (no objectness)."""
    if out.shape[0] == 4 + n_classes and out.shape[1] != 4 + n_classes:
        out = out.T
    elif out.shape[1] != 4 + n_classes:
        raise ModelError(f"YOLOv8 output {out.shape} has no axis of 4+{n_classes} channels")
    return xywh_to_xyxy(out[:, :4]), out[:, [4 + c for c in classes]].max(1)


DECODERS = ("yolox", "yolov8")


class Runner(Protocol):
    """What runs the model: a `session.SharedSession` (one per detector name, shared by cameras)."""

    manifest: Manifest

    def run(self, blob: np.ndarray) -> np.ndarray: ...


class OnnxDetector:
    """YOLOX/YOLOv8 detector for one camera on a (possibly shared) onnxruntime session.

    `classes` are the COCO ids kept (person by default; car/bus/truck for a car park); a box's score is
    objectness × its best kept class. Without `session` the detector loads its own, checking the model's
    sha256 first.
    """

    def __init__(self, model_dir: Path | None = None, providers: list[str] | None = None, threads: int = 2,
                 conf: float = 0.3, iou: float = 0.45, input_size: int | None = None,
                 classes: tuple[int, ...] = (PERSON,), session: Runner | None = None,
                 fallback: bool = False) -> None:
        if session is None:
            from edge_agent.vision.session import SharedSession  # the session module builds on this one

            session = SharedSession(Path(model_dir or default_model_dir()), providers, threads, fallback)
        self.session = session
        self.manifest = m = session.manifest
        if m.decoder not in DECODERS:
            raise ModelError(f"unknown decoder {m.decoder!r}")
        if not classes or any(not 0 <= c < 80 for c in classes):
            raise ValueError(f"classes must be COCO ids 0..79, got {classes}")
        self.classes = tuple(classes)
        self.size = input_size or m.size
        self.conf, self.iou = conf, iou
        self._buf: np.ndarray | None = None

    def preprocess(self, frame: np.ndarray) -> tuple[np.ndarray, Letterbox]:
        import cv2

        h, w = frame.shape[:2]
        lb = Letterbox.fit(w, h, self.size)
        nw, nh = int(round(w * lb.scale)), int(round(h * lb.scale))
        if self._buf is None:
            self._buf = np.empty((self.size, self.size, 3), np.uint8)
        self._buf.fill(114)
        self._buf[:nh, :nw] = cv2.resize(frame, (nw, nh), interpolation=cv2.INTER_LINEAR)
        blob = self._buf.transpose(2, 0, 1)[None].astype(np.float32)
        return blob, lb

    def detect(self, frame: np.ndarray) -> np.ndarray:
        blob, lb = self.preprocess(frame)
        return self.postprocess(self.session.run(blob), lb)

    def postprocess(self, out: np.ndarray, lb: Letterbox) -> np.ndarray:
        if self.manifest.decoder == "yolox":
            boxes, scores = decode_yolox(out, self.size, self.manifest.strides, self.classes)
        else:
            boxes, scores = decode_yolov8(out, classes=self.classes)
        keep = scores >= self.conf
        boxes, scores = boxes[keep], scores[keep]
        if not len(boxes):
            return np.zeros((0, 5), np.float32)
        idx = nms(boxes, scores, self.iou)
        return np.concatenate([lb.to_image(boxes[idx]), scores[idx, None]], 1).astype(np.float32)


def default_model_dir() -> Path:
    """models/yolox_nano next to the package (source checkout) or as installed data."""
    here = Path(__file__).resolve().parents[2] / "models" / "yolox_nano"
    return here

