"""Person detector plugins. `OnnxDetector` runs YOLOX (or YOLOv8-style) ONNX models with onnxruntime.

Raises ModelError for a missing model, a checksum mismatch or an unavailable provider.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from edge_agent.vision.geometry import Letterbox, nms, xywh_to_xyxy

logger = logging.getLogger(__name__)

PERSON = 0


class ModelError(RuntimeError):
    """The model cannot be used: missing, corrupt, or not runnable here."""


class Detector(Protocol):
    def detect(self, frame: np.ndarray) -> np.ndarray:
        """Person boxes in image pixels as an (N, 5) array: x1, y1, x2, y2, score."""
        ...


def decode_yolox(out: np.ndarray, size: int, strides: tuple[int, ...] = (8, 16, 32)) -> tuple[np.ndarray, np.ndarray]:
    """Raw YOLOX output (A, 5+C) → (xyxy boxes in input pixels, person scores)."""
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
    scores = out[:, 4] * out[:, 5 + PERSON]
    return xywh_to_xyxy(np.concatenate([xy, wh], 1)), scores


def decode_yolov8(out: np.ndarray, classes: int = 80) -> tuple[np.ndarray, np.ndarray]:
    """YOLOv8-style output (4+C, A) or (A, 4+C) with cx, cy, w, h and class scores (no objectness)."""
    if out.shape[0] == 4 + classes and out.shape[1] != 4 + classes:
        out = out.T
    elif out.shape[1] != 4 + classes:
        raise ModelError(f"YOLOv8 output {out.shape} has no axis of 4+{classes} channels")
    return xywh_to_xyxy(out[:, :4]), out[:, 4 + PERSON]


DECODERS = ("yolox", "yolov8")


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class Manifest:
    path: Path
    sha256: str
    size: int
    decoder: str
    strides: tuple[int, ...]

    @classmethod
    def load(cls, model_dir: Path) -> Manifest:
        mf = model_dir / "manifest.json"
        if not mf.exists():
            raise ModelError(f"no manifest.json in {model_dir}")
        doc = json.loads(mf.read_text())
        return cls(model_dir / doc["file"], doc["sha256"], int(doc["input"]["shape"][-1]),
                   doc["output"]["decoder"], tuple(doc["output"].get("strides", (8, 16, 32))))


class OnnxDetector:
    """onnxruntime person detector; verifies the model's sha256 before loading it."""

    def __init__(self, model_dir: Path, providers: list[str] | None = None, threads: int = 2,
                 conf: float = 0.3, iou: float = 0.45, input_size: int | None = None) -> None:
        import onnxruntime as ort

        self.manifest = m = Manifest.load(Path(model_dir))
        if not m.path.exists():
            raise ModelError(f"model file {m.path} is missing")
        digest = sha256_of(m.path)
        if digest != m.sha256:
            raise ModelError(f"model {m.path} has sha256 {digest[:16]}…, manifest says {m.sha256[:16]}…")
        if m.decoder not in DECODERS:
            raise ModelError(f"unknown decoder {m.decoder!r}")
        wanted = providers or ["CPUExecutionProvider"]
        missing = [p for p in wanted if p not in ort.get_available_providers()]
        if missing:
            raise ModelError(f"onnxruntime providers {missing} not available here "
                             f"(have {ort.get_available_providers()})")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(m.path), opts, providers=wanted)
        self.input_name = self.session.get_inputs()[0].name
        self.size = input_size or m.size
        self.conf, self.iou = conf, iou
        self._buf: np.ndarray | None = None
        self.session.run(None, {self.input_name: np.full((1, 3, self.size, self.size), 114, np.float32)})  # warm-up

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
        out = self.session.run(None, {self.input_name: blob})[0][0]
        return self.postprocess(out, lb)

    def postprocess(self, out: np.ndarray, lb: Letterbox) -> np.ndarray:
        if self.manifest.decoder == "yolox":
            boxes, scores = decode_yolox(out, self.size, self.manifest.strides)
        else:
            boxes, scores = decode_yolov8(out)
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

