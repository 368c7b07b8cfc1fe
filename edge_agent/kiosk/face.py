"""Face check (人证核验): the ID-card photo against the live face, with a basic liveness signal.

YuNet finds faces and five landmarks, SFace turns an aligned face into an embedding, and the cosine of
two embeddings is the score; the models and their sha256 are in models/face/manifest.json and checked at
load. Liveness: the guest turns their head; across the frames the nose moves relative to the eyes
((nose_x − eye_mid_x) / eye distance changes by at least `turn`), which a flat photo held up to the camera
cannot do (tilting a photo scales x uniformly and leaves that ratio unchanged). Every frame must show
exactly one face and every frame must match: a second person or a swapped face fails the check.

Chip photos are vendor-compressed (WLT); `PhotoDecoder` decodes JPEG/BMP directly and WLT through a
vendor library loaded with ctypes when configured; otherwise it raises PhotoUndecodable and the kiosk
falls back to staff verification. Images only ever live in memory.

Raised: NoFace (no face where one is needed), PhotoUndecodable, ModelError (missing or altered model).
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

MODEL_DIR = Path(__file__).resolve().parents[2] / "models" / "face"
WLT_BMP_BYTES = 38862  # 102 × 126 × 24 bit with row padding, plus the BMP header


class NoFace(ValueError):
    """No face (or not exactly one where one is required)."""


class PhotoUndecodable(ValueError):
    """The ID photo is in a format this kiosk cannot decode."""


class ModelError(RuntimeError):
    """A model file is missing or does not match its manifest."""


@dataclass(frozen=True)
class Verdict:
    score: float  # lowest cosine over the live frames
    match: bool
    live: bool
    turn: float  # range of the yaw ratio across frames
    faces: int  # frames with exactly one face

    @property
    def ok(self) -> bool:
        return self.match and self.live


def _verified(folder: Path, entry: dict[str, Any]) -> str:
    path = folder / entry["file"]
    if not path.exists():
        raise ModelError(f"model {path} is missing")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != entry["sha256"]:
        raise ModelError(f"model {path} does not match its manifest (sha256 {digest[:12]}…)")
    return str(path)


class FaceMatcher:
    """Thread-safe (one lock: OpenCV's nets are not)."""

    def __init__(self, model_dir: Path | None = None, threshold: float = 0.363, turn: float = 0.12) -> None:
        import cv2

        # OpenCV 5 warns on every net that targets are unsupported by its new engine: noise for support staff
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
        folder = Path(model_dir or MODEL_DIR)
        try:
            manifest = json.loads((folder / "manifest.json").read_text())
        except (OSError, ValueError) as err:
            raise ModelError(f"no readable manifest.json in {folder}: {err}") from err
        self.detector = cv2.FaceDetectorYN.create(_verified(folder, manifest["detector"]), "", (320, 320),
                                                  0.7, 0.3, 50)
        self.recognizer = cv2.FaceRecognizerSF.create(_verified(folder, manifest["recognizer"]), "")
        self.threshold, self.turn = threshold, turn
        self.lock = threading.Lock()
        self._cv2 = cv2

    def faces(self, image: Any) -> Any:
        """YuNet rows (x, y, w, h, 5 landmarks, score) for an image scaled to at most 640 px."""
        h, w = image.shape[:2]
        if max(h, w) > 640:
            s = 640 / max(h, w)
            image = self._cv2.resize(image, (round(w * s), round(h * s)))
            h, w = image.shape[:2]
        with self.lock:
            self.detector.setInputSize((w, h))
            _, found = self.detector.detect(image)
        return (image, np.zeros((0, 15), np.float32) if found is None else found)

    def embed(self, image: Any, single: bool = False) -> tuple[Any, Any]:
        """(embedding, face row) of the most confident face; NoFace when none (or several and `single`)."""
        scaled, found = self.faces(image)
        if len(found) == 0 or (single and len(found) != 1):
            raise NoFace(f"{len(found)} faces found")
        face = found[int(np.argmax(found[:, -1]))]
        with self.lock:
            feat = self.recognizer.feature(self.recognizer.alignCrop(scaled, face)).copy()
        return feat, face

    def score(self, a: Any, b: Any) -> float:
        with self.lock:
            return float(self.recognizer.match(a, b, self._cv2.FaceRecognizerSF_FR_COSINE))

    def compare(self, id_photo: Any, live: Any) -> float:
        """Cosine score of two images (support CLI); NoFace when either has no face."""
        return self.score(self.embed(id_photo)[0], self.embed(live)[0])

    def verify(self, id_photo: Any, frames: list[Any]) -> Verdict:
        """The ID photo against live frames: match (every frame) and liveness (head turn across frames)."""
        ref, _ = self.embed(id_photo)
        scores, yaws = [], []
        for frame in frames:
            try:
                feat, face = self.embed(frame, single=True)
            except NoFace:
                continue
            scores.append(self.score(ref, feat))
            rx, lx, nx = float(face[4]), float(face[6]), float(face[8])
            yaws.append((nx - (rx + lx) / 2) / max(abs(lx - rx), 1.0))
        if len(scores) < max(2, len(frames) // 2):
            raise NoFace(f"one face was seen in only {len(scores)} of {len(frames)} frames")
        turn = max(yaws) - min(yaws)
        low = min(scores)
        return Verdict(round(low, 4), low >= self.threshold, turn >= self.turn, round(turn, 4), len(scores))


class PhotoDecoder:
    """ID photo bytes → BGR image. JPEG and BMP directly; WLT through `library` (ctypes) when given."""

    def __init__(self, library: Path | None = None, symbol: str = "unpack") -> None:
        self.library, self.symbol = library, symbol
        self._fn: Any = None

    def _vendor(self) -> Any:
        if self._fn is None:
            if self.library is None:
                raise PhotoUndecodable("chip photo is WLT and no decoder library is configured")
            try:
                lib = ctypes.CDLL(str(self.library))
                fn = getattr(lib, self.symbol)
            except (OSError, AttributeError) as err:
                raise PhotoUndecodable(f"WLT decoder {self.library} cannot be loaded: {err}") from err
            fn.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int]
            fn.restype = ctypes.c_int
            self._fn = fn
        return self._fn

    def decode(self, photo: bytes) -> Any:
        import cv2

        if not photo or not any(photo):
            raise PhotoUndecodable("the card delivered no photo")
        if photo[:2] in (b"\xff\xd8", b"BM"):
            image = cv2.imdecode(np.frombuffer(photo, np.uint8), cv2.IMREAD_COLOR)
            if image is None:
                raise PhotoUndecodable("the photo is a damaged JPEG/BMP")
            return image
        out = ctypes.create_string_buffer(WLT_BMP_BYTES)
        if self._vendor()(photo, out, 0) != 1:
            raise PhotoUndecodable("the WLT decoder refused the chip photo")
        image = cv2.imdecode(np.frombuffer(out.raw, np.uint8), cv2.IMREAD_COLOR)
        if image is None:
            raise PhotoUndecodable("the WLT decoder returned no image")
        return image
