"""One onnxruntime session shared by several cameras, and the execution providers it runs on.

Cameras that name the same detector get the same `SharedSession` from a `SessionPool`: the model is
loaded and checked once, and one inference runs at a time. Requests that arrive while an inference
runs are collected and run together on the next turn ("group commit"): as one batched call when the
model's batch dimension is dynamic, frame by frame under the lock when it is fixed at 1 (the shipped
YOLOX-nano export is: input [1, 3, 416, 416]).

Providers: the ones a config asks for must be present in this onnxruntime build *and* active in the
session it creates (onnxruntime silently drops a CUDA/TensorRT provider whose libraries fail to load).
A missing one raises ModelError, a start-up config error, unless `fallback` is set: then the session
runs on what is there, the fallback is logged as a warning and reported in `SharedSession.providers`.

Raises ModelError (missing/corrupt model, provider not available).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge_agent.vision.model import Manifest, ModelError, sha256_of

logger = logging.getLogger(__name__)

CPU = "CPUExecutionProvider"


def resolve_providers(wanted: list[str], available: list[str], fallback: bool) -> list[str]:
    """The providers to ask onnxruntime for. Pure: `available` is ort.get_available_providers()."""
    missing = [p for p in wanted if p not in available]
    if not missing:
        return list(wanted)
    if not fallback:
        raise ModelError(f"onnxruntime providers {missing} not available here (have {available}); "
                         "install the matching onnxruntime build or set fallback = true")
    kept = [p for p in wanted if p in available] or [CPU]
    logger.warning("onnxruntime providers %s not available; falling back to %s", missing, kept)
    return kept


def provider_rows(cameras: list[Any], available: list[str] | None) -> list[tuple[str, str, str]]:
    """`edge-agent doctor` rows, one per detector name: are its providers here? `available` is None when
    onnxruntime itself is not installed."""
    rows: list[tuple[str, str, str]] = []
    for name in sorted({c.detector for c in cameras}):
        cams = [c for c in cameras if c.detector == name]
        wanted, fallback = list(cams[0].providers), cams[0].provider_fallback
        who = f"detector {name} ({', '.join(c.name for c in cams)})"
        if available is None:
            rows.append((who, "FAIL", "onnxruntime is not installed (pip install smart-venue-edge[vision])"))
            continue
        missing = [p for p in wanted if p not in available]
        if not missing:
            rows.append((who, "OK", f"providers {wanted}"))
        elif fallback:
            kept = [p for p in wanted if p in available] or [CPU]
            rows.append((who, "WARN", f"{missing} not available: falls back to {kept}"))
        else:
            rows.append((who, "FAIL", f"{missing} not available (have {available}): the camera will not start"))
    return rows


def provider_entries(providers: list[str], trt_cache_dir: Path | None = None,
                     trt_fp16: bool = False) -> list[str | tuple[str, dict[str, str]]]:
    """onnxruntime's `providers=` list with TensorRT's options. Without an engine cache TensorRT rebuilds its
    engine at every start (minutes on a Jetson); with one the first start builds it, later ones load it."""
    out: list[str | tuple[str, dict[str, str]]] = []
    for p in providers:
        if p == "TensorrtExecutionProvider" and (trt_cache_dir or trt_fp16):
            opts = {"trt_fp16_enable": "True" if trt_fp16 else "False"}
            if trt_cache_dir:
                opts |= {"trt_engine_cache_enable": "True", "trt_engine_cache_path": str(trt_cache_dir)}
            out.append((p, opts))
        else:
            out.append(p)
    return out


@dataclass
class _Request:
    blob: np.ndarray
    out: np.ndarray | None = None
    error: BaseException | None = None


class SharedSession:
    """A thread-safe detector session: `run(blob)` from any camera thread, one inference at a time."""

    def __init__(self, model_dir: Path, providers: list[str] | None = None, threads: int = 2,
                 fallback: bool = False, max_batch: int = 8, trt_cache_dir: Path | None = None,
                 trt_fp16: bool = False, spin: bool = True) -> None:
        import onnxruntime as ort

        self.manifest = m = Manifest.load(Path(model_dir))
        if not m.path.exists():
            raise ModelError(f"model file {m.path} is missing")
        digest = sha256_of(m.path)
        if digest != m.sha256:
            raise ModelError(f"model {m.path} has sha256 {digest[:16]}…, manifest says {m.sha256[:16]}…")
        wanted = resolve_providers(list(providers or [CPU]), ort.get_available_providers(), fallback)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        # onnxruntime's worker threads busy-wait between runs by default: cheaper per run on idle cores, but
        # they take CPU from the decoders and other roles on a busy device (bench/multicam.py --no-spin).
        opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
        self.session = ort.InferenceSession(str(m.path), opts,
                                            providers=provider_entries(wanted, trt_cache_dir, trt_fp16))
        active = self.session.get_providers()
        if wanted[0] not in active:  # e.g. CUDA listed as built in, but libcudnn missing at load
            if not fallback:
                raise ModelError(f"onnxruntime could not start {wanted[0]} (active: {active})")
            logger.warning("onnxruntime could not start %s; running on %s", wanted[0], active)
        self.providers: list[str] = active
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        dim = inp.shape[0]
        # An int batch dimension is fixed by the export; a name (or None) is dynamic.
        self.batch: int | None = dim if isinstance(dim, int) else None
        self.max_batch = max_batch if self.batch is None else self.batch
        self._run_lock = threading.Lock()  # one inference at a time
        self._mutex = threading.Lock()  # guards _pending
        self._pending: list[_Request] = []
        self.calls = 0  # session.run calls (batched or not), for benches and tests
        self.frames = 0
        self._infer(np.full((1, 3, m.size, m.size), 114, np.float32))  # warm-up: the first run is slow
        self.calls = self.frames = 0

    def run(self, blob: np.ndarray) -> np.ndarray:
        """Raw model output for one (1, 3, S, S) blob; blocks while another camera's inference runs."""
        req = _Request(blob)
        with self._mutex:
            self._pending.append(req)
        while req.out is None and req.error is None:
            with self._run_lock:
                if req.out is not None or req.error is not None:
                    break  # another camera ran ours with its batch
                with self._mutex:
                    batch, self._pending = self._pending[:self.max_batch], self._pending[self.max_batch:]
                try:
                    outs = self._infer(*(r.blob for r in batch))
                except Exception as err:  # every waiting camera sees the failure, not only the runner
                    for r in batch:
                        r.error = err
                else:
                    for r, o in zip(batch, outs, strict=True):
                        r.out = o
        if req.error is not None:
            raise req.error
        assert req.out is not None
        return req.out

    def _infer(self, *blobs: np.ndarray) -> list[np.ndarray]:
        self.frames += len(blobs)
        if self.batch == 1 or (self.batch is None and len(blobs) == 1):
            self.calls += len(blobs)
            return [self.session.run(None, {self.input_name: b})[0][0] for b in blobs]
        x = np.concatenate(blobs)
        if self.batch is not None and len(x) < self.batch:  # fixed batch > 1: pad with grey frames
            x = np.concatenate([x, np.full((self.batch - len(x), *x.shape[1:]), 114, np.float32)])
        self.calls += 1
        out = self.session.run(None, {self.input_name: x})[0]
        return [out[i] for i in range(len(blobs))]


@dataclass(frozen=True)
class SessionSpec:
    """What a detector name stands for; two cameras naming one detector must agree on all of it."""

    model: Path
    providers: tuple[str, ...]
    threads: int
    fallback: bool
    trt_cache_dir: Path | None = None
    trt_fp16: bool = False
    spin: bool = True


class SessionPool:
    """Named sessions of one process: the first camera naming a detector loads it, the others share it."""

    def __init__(self, factory: Callable[..., Any] = SharedSession) -> None:
        self._factory = factory
        self._lock = threading.Lock()
        self._sessions: dict[str, tuple[SessionSpec, Any]] = {}

    def get(self, name: str, spec: SessionSpec) -> Any:
        with self._lock:
            held = self._sessions.get(name)
            if held is not None and held[0] == spec:
                return held[1]
            if held is not None:
                # One config never names a detector two ways (the agent's config check), so this is a new
                # config (remote reconfiguration): load the new session; cameras still on the old one keep it
                # until they restart.
                logger.info("detector %s reloaded: %s (was %s)", name, spec, held[0])
            session = self._factory(spec.model, list(spec.providers), spec.threads, spec.fallback,
                                    trt_cache_dir=spec.trt_cache_dir, trt_fp16=spec.trt_fp16, spin=spec.spin)
            self._sessions[name] = (spec, session)
            return session

    def loaded(self, name: str) -> Any | None:
        """The session loaded under `name`, if any (for health reports and tests)."""
        held = self._sessions.get(name)
        return held[1] if held else None

    def __len__(self) -> int:
        return len(self._sessions)


POOL = SessionPool()  # the agent process's detectors, shared by its camera roles
