"""Several cameras on one device: 1, 2 and 4 camera threads, each decoding its own copy of the PETS 2009
video and counting on a line at x = W/2, all on ONE detector session (vision/session.py) — against one
session per camera for comparison.

The shipped YOLOX-nano export has a fixed batch of 1 (input [1, 3, 416, 416]), so the shared session runs
the cameras' frames one after another under its lock; a model exported with a dynamic batch would have
them batched (the session reads the batch dimension from the model). Frames/s are the sum over cameras,
decoding included; each camera also reports its own.

Frames/s on a machine shared with other work favour the run with more threads; CPU ms per frame is printed too.

Ends with: RESULT cams1_fps= cams2_fps= cams4_fps= shared_sessions=1 separate_cams4_fps= cams4_cpu_ms=
separate_cams4_cpu_ms= session_mb= batch=
same_counts= (counts of each camera equal to the single-camera run's).
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from itertools import islice
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edge_agent.vision.counting import LineCounter  # noqa: E402
from edge_agent.vision.detector import OnnxDetector, default_model_dir  # noqa: E402
from edge_agent.vision.gating import GateConfig  # noqa: E402
from edge_agent.vision.pipeline import Pipeline  # noqa: E402
from edge_agent.vision.session import SessionPool, SessionSpec  # noqa: E402
from edge_agent.vision.sources import open_source  # noqa: E402

VIDEO = ROOT / "tests" / "fixtures" / "pets09_s2l1_view1_480x360.avi"


def camera(video: str, det: OnnxDetector, frames: int, gated: bool, out: dict[str, object]) -> None:
    first = next(iter(open_source(video)))
    h, w = first.image.shape[:2]
    line = LineCounter("mid", (w / 2, 0), (w / 2, h))
    pipe = Pipeline(det, [line], gate=GateConfig() if gated else None)
    t = time.perf_counter()
    n = 0
    for f in islice(open_source(video), frames):
        pipe.process(lambda f=f: f.image, f.index)
        n += 1
    out.update(fps=n / (time.perf_counter() - t), frames=n, counts=dict(line.counts))


def rss_mb() -> float:
    """Resident memory now (Linux /proc), MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def run(video: str, cams: int, frames: int, shared: bool, gated: bool, threads: int,
        providers: tuple[str, ...], spin: bool) -> tuple[float, list[dict[str, object]], int, float]:
    pool = SessionPool()
    spec = SessionSpec(default_model_dir(), providers, threads, False, spin=spin)
    before = rss_mb()
    dets = [OnnxDetector(session=pool.get("shared" if shared else f"cam{i}", spec)) for i in range(cams)]
    loaded = rss_mb() - before
    results: list[dict[str, object]] = [{} for _ in range(cams)]
    workers = [threading.Thread(target=camera, args=(video, d, frames, gated, r)) for d, r in zip(dets, results,
                                                                                                  strict=True)]
    t, cpu = time.perf_counter(), time.process_time()
    for th in workers:
        th.start()
    for th in workers:
        th.join()
    frames = sum(int(r["frames"]) for r in results)  # type: ignore[call-overload]
    # CPU time per frame (all threads of this process): the cost, less skewed than frames/s by other load on
    # a shared machine (a process with more threads gets a larger share of busy cores).
    results[0]["cpu_ms"] = 1000 * (time.process_time() - cpu) / frames
    return frames / (time.perf_counter() - t), results, len(pool), loaded


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--video", default=str(VIDEO))
    ap.add_argument("--frames", type=int, default=200, help="Frames per camera.")
    ap.add_argument("--threads", type=int, default=2, help="onnxruntime intra-op threads per session.")
    ap.add_argument("--gated", action="store_true", help="Gated pipeline instead of every frame.")
    ap.add_argument("--no-spin", action="store_true", help="onnxruntime threads do not busy-wait between runs.")
    ap.add_argument("--providers", default="CPUExecutionProvider", help="Comma-separated onnxruntime providers.")
    a = ap.parse_args()
    providers = tuple(a.providers.split(","))
    fps: dict[int, float] = {}
    cpu_ms: dict[int, float] = {}
    base: object = None
    same = True
    batch: object = None
    for cams in (1, 2, 4):
        total, res, sessions, _ = run(a.video, cams, a.frames, True, a.gated, a.threads, providers, not a.no_spin)
        fps[cams] = total
        base = base or res[0]["counts"]
        same &= all(r["counts"] == base for r in res)
        per = " ".join(f"{float(r['fps']):.1f}" for r in res)  # type: ignore[arg-type]
        cpu_ms[cams] = float(res[0]["cpu_ms"])  # type: ignore[arg-type]
        print(f"{cams} camera(s), {sessions} shared session: {total:.1f} frames/s in all (per camera: {per}), "
              f"{cpu_ms[cams]:.1f} CPU ms a frame, counts {[r['counts'] for r in res]}")
    sep, res, sessions, sep_mb = run(a.video, 4, a.frames, False, a.gated, a.threads, providers, not a.no_spin)
    sep_cpu = float(res[0]["cpu_ms"])  # type: ignore[arg-type]
    print(f"4 cameras, {sessions} separate sessions: {sep:.1f} frames/s in all, {sep_cpu:.1f} CPU ms a frame; "
          f"loading them took {sep_mb:.0f} MiB "
          f"(~{sep_mb / 4:.0f} MiB a session, saved by each camera that shares one)")
    import onnxruntime as ort

    sess = ort.InferenceSession(str(default_model_dir() / "yolox_nano.onnx"), providers=list(providers))
    batch = sess.get_inputs()[0].shape[0]
    print(f"RESULT cams1_fps={fps[1]:.1f} cams2_fps={fps[2]:.1f} cams4_fps={fps[4]:.1f} shared_sessions=1 "
          f"separate_cams4_fps={sep:.1f} cams4_cpu_ms={cpu_ms[4]:.1f} separate_cams4_cpu_ms={sep_cpu:.1f} "
          f"session_mb={sep_mb / 4:.0f} batch={batch} "
          f"mode={'gated' if a.gated else 'every_frame'} spin={'false' if a.no_spin else 'true'} "
          f"same_counts={'true' if same else 'false'}")


if __name__ == "__main__":
    main()
