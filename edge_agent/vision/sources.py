"""Frame sources: camera index, RTSP/HTTP stream, video file, image folder (MOT `img1/` layout).

A stream that drops is reopened with backoff; `SourceUnavailable` is raised only for a source that
cannot be opened at all (file missing) — live cameras report unavailability and keep retrying.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from edge_agent.core.backoff import Backoff

logger = logging.getLogger(__name__)
IMAGE_EXT = (".jpg", ".jpeg", ".png", ".bmp")


class SourceUnavailable(RuntimeError):
    """The camera, stream or file cannot deliver frames."""


class Frame:
    """One frame; the pixels are decoded on first access (skipped frames never pay for it)."""

    __slots__ = ("index", "t", "_image", "_load")

    def __init__(self, index: int, t: float, image: np.ndarray | None = None,
                 load: Callable[[], np.ndarray | None] | None = None) -> None:
        self.index, self.t, self._image, self._load = index, t, image, load

    @property
    def image(self) -> np.ndarray:
        if self._image is None and self._load is not None:
            self._image, self._load = self._load(), None
        if self._image is None:
            raise SourceUnavailable(f"frame {self.index} could not be decoded")
        return self._image


def _imread(path: Path) -> np.ndarray | None:
    import cv2

    img = cv2.imread(str(path))
    if img is None:
        logger.warning("unreadable image %s", path)
    return img


def _retrieve(cap: Any) -> np.ndarray | None:
    ok, img = cap.retrieve()
    return img if ok else None


def image_folder(path: Path) -> Iterator[Frame]:
    folder = path / "img1" if (path / "img1").is_dir() else path
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXT)
    if not files:
        raise SourceUnavailable(f"no images in {folder}")

    for i, f in enumerate(files, 1):
        yield Frame(i, float(i), load=partial(_imread, f))


def frame_count(spec: str) -> int | None:
    p = Path(spec)
    if p.is_dir():
        folder = p / "img1" if (p / "img1").is_dir() else p
        return sum(1 for f in folder.iterdir() if f.suffix.lower() in IMAGE_EXT)
    if p.is_file():
        import cv2

        cap = cv2.VideoCapture(str(p))
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))  # the container's claim: may be wrong (see cli.Progress)
        cap.release()
        return n if n > 0 else None
    return None


def video(spec: str, live: bool, stop_after_s: float | None = None,
          backoff: Backoff | None = None) -> Iterator[Frame]:
    """Frames from cv2.VideoCapture; a live source that fails is reopened with backoff."""
    import cv2

    target: int | str = int(spec) if spec.isdigit() else spec
    backoff = backoff or Backoff(0.5, 30)
    index = 0
    while True:
        cap = cv2.VideoCapture(target)
        if not cap.isOpened():
            cap.release()
            if not live:
                raise SourceUnavailable(f"cannot open {spec}")
            delay = backoff.next()
            logger.warning("camera %s unavailable; retrying in %.1f s", spec, delay)
            time.sleep(delay)
            continue
        backoff.reset()
        fps = cap.get(cv2.CAP_PROP_FPS) or 10.0
        while True:
            if not cap.grab():  # demux/decode now; colour conversion only if someone looks
                break
            index += 1
            yield Frame(index, time.time() if live else index / fps, load=partial(_retrieve, cap))
        cap.release()
        if not live:
            return
        logger.warning("camera %s stream ended; reconnecting", spec)


def open_source(spec: str) -> Iterator[Frame]:
    """Pick the source kind from the spec: digits = camera, scheme:// = stream, dir = images, else file."""
    p = Path(spec)
    if p.is_dir():
        return image_folder(p)
    if spec.isdigit() or "://" in spec:
        return video(spec, live=True)
    if not p.exists():
        raise SourceUnavailable(f"no such file: {spec}")
    return video(spec, live=False)
