"""Vision speed on the PETS 2009 S2.L1 video (795 frames): (a) decode only, (b) detect every frame,
(c) our gated pipeline — same model, same run, counts of (b) and (c) on a line at x = W/2.

Ends with: RESULT decode_fps= every_frame_fps= gated_fps= gated_vs_every_frame= gated_vs_decode=
same_counts= peak_rss_mb= (and cuda_fps when onnxruntime has the CUDA provider).
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edge_agent.vision.counting import LineCounter  # noqa: E402
from edge_agent.vision.detector import OnnxDetector, default_model_dir  # noqa: E402
from edge_agent.vision.gating import GateConfig  # noqa: E402
from edge_agent.vision.pipeline import Pipeline  # noqa: E402
from edge_agent.vision.sources import open_source  # noqa: E402

VIDEO = ROOT / "tests" / "fixtures" / "pets09_s2l1_view1_480x360.avi"


def decode_only(video: str) -> tuple[float, int, tuple[int, int]]:
    t = time.perf_counter()
    n, shape = 0, (0, 0)
    for f in open_source(video):
        n += 1
        shape = f.image.shape[:2]
    return n / (time.perf_counter() - t), n, shape


def run(video: str, det: OnnxDetector, w: int, h: int, gate: GateConfig | None) -> tuple[float, dict, int]:
    line = LineCounter("mid", (w / 2, 0), (w / 2, h))
    pipe = Pipeline(det, [line], gate=gate)
    t = time.perf_counter()
    for f in open_source(video):  # decoding is inside the timing: frames/s end to end
        pipe.process(lambda f=f: f.image, f.index)
    pipe.close(pipe.stats.frames)  # end of the file: side changes held to the end count, as in `vision run`
    fps = pipe.stats.frames / (time.perf_counter() - t)
    return fps, pipe.counts()["mid"], pipe.stats.detections


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--video", default=str(VIDEO))
    ap.add_argument("--stride", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    dec_fps, n, (h, w) = decode_only(a.video)
    print(f"(a) decode only: {n} frames {w}x{h}, {dec_fps:,.0f} fps")
    det = OnnxDetector(default_model_dir(), threads=a.threads)
    every_fps, every_counts, _ = run(a.video, det, w, h, None)
    print(f"(b) detect every frame: {every_fps:.1f} fps, counts {every_counts}")
    gated_fps, gated_counts, ran = run(a.video, det, w, h, GateConfig(stride=a.stride))
    print(f"(c) gated (stride {a.stride}, motion gate): {gated_fps:.1f} fps, detector on {ran}/{n} frames, "
          f"counts {gated_counts}")
    extra = ""
    try:
        import onnxruntime as ort

        if "CUDAExecutionProvider" in ort.get_available_providers():
            cuda = OnnxDetector(default_model_dir(), providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
            cuda_fps, cuda_counts, _ = run(a.video, cuda, w, h, None)
            print(f"CUDA every frame: {cuda_fps:.1f} fps, counts {cuda_counts}")
            extra = f" cuda_fps={cuda_fps:.1f}"
    except Exception as err:  # a broken GPU stack must not hide the CPU figures
        print(f"CUDA provider not measured: {err}")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    same = gated_counts == every_counts
    print(f"RESULT decode_fps={dec_fps:.0f} every_frame_fps={every_fps:.1f} gated_fps={gated_fps:.1f} "
          f"gated_vs_every_frame={gated_fps / every_fps:.2f} gated_vs_decode={gated_fps / dec_fps:.3f} "
          f"same_counts={'true' if same else 'false'} peak_rss_mb={rss:.0f}{extra}")


if __name__ == "__main__":
    main()
