"""The model on disk: its manifest (file, sha256, input size, decoder) and the errors of loading it."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path


class ModelError(RuntimeError):
    """The model cannot be used: missing, corrupt, or not runnable here."""


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
