"""`edge-agent vision run|eval|bench`."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from edge_agent.vision.counting import LineCounter


def parse_line(text: str, name: str = "line") -> LineCounter:
    try:
        x1, y1, x2, y2 = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--line wants X1,Y1,X2,Y2 in pixels, got {text!r}") from None
    try:
        return LineCounter(name, (x1, y1), (x2, y2))
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


class Progress:
    """Frames done and the end-to-end rate on stderr. The total is what the container claims, and containers
    misreport it (a truncated recording, a header written before the end): once more frames arrive than
    claimed the bar becomes a plain count, and `finish` closes it at the frames actually read."""

    def __init__(self, total: int | None, out: TextIO | None = None,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.total, self.out, self.clock = total, out or sys.stderr, clock
        self.start = clock()
        self.done = 0

    def fps(self) -> float:
        """Frames per second since the start, wall clock: decoding, skipped frames and all."""
        return self.done / max(self.clock() - self.start, 1e-9)

    def update(self, i: int, force: bool = False) -> None:
        self.done = i
        if self.total is not None and i > self.total:
            self.total = None  # the container under-reported its frame count
        if not force and not self.out.isatty() and i % 50:
            return
        bar = ""
        if self.total:
            n = int(30 * i / self.total)
            bar = f"[{'#' * n}{'.' * (30 - n)}] {i}/{self.total} "
        else:
            bar = f"{i} frames "
        print(f"\r{bar}{self.fps():6.1f} fps", end="", file=self.out, flush=True)

    def finish(self) -> None:
        """The last line: the bar at the frames really read, whatever the container claimed."""
        if self.total is not None and self.done < self.total:
            self.total = self.done or None
        self.update(self.done, force=True)
        print(file=self.out)


def build_pipeline(args: argparse.Namespace, lines: list[LineCounter]) -> Any:
    from edge_agent.vision.detector import ModelError, OnnxDetector, default_model_dir
    from edge_agent.vision.gating import GateConfig
    from edge_agent.vision.pipeline import Pipeline

    try:
        det = OnnxDetector(Path(args.model) if args.model else default_model_dir(), threads=args.threads,
                           providers=args.providers.split(","), fallback=args.provider_fallback)
    except ModelError as err:
        print(f"detector: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    gate = None if args.every_frame else GateConfig(stride=args.stride)
    return Pipeline(det, lines, gate=gate)


def cmd_eval(args: argparse.Namespace) -> int:
    from edge_agent.vision.evaluate import Boxes, load_mot, mot_metrics
    from edge_agent.vision.sources import frame_count, image_folder
    from edge_agent.vision.truth import MIN_FRAMES, tally, true_crossings

    seq = Path(args.sequence)
    gt_file = seq / "gt" / "gt.txt"
    if not gt_file.exists():
        print(f"{seq}: no gt/gt.txt (MOT layout: img1/, gt/gt.txt)", file=sys.stderr)
        return 2
    line = args.line
    pipe = build_pipeline(args, [line])
    hyp: Boxes = {}
    progress = Progress(frame_count(str(seq)))
    writer = _writer(args)
    for i, f in enumerate(image_folder(seq), 1):
        r = pipe.process(lambda f=f: f.image, f.index)
        hyp[f.index] = {t.id: t.box for t in r.tracks if t.confirmed}
        if writer:
            from edge_agent.vision.annotate import draw

            writer.write(draw(f.image, r.tracks, [line]))
        progress.update(i)
    progress.finish()
    pipe.close(pipe.stats.frames)  # the sequence ends: crossings held to the end count
    if writer:
        writer.close()
    gt = load_mot(gt_file)
    truth = tally(true_crossings(gt, line.a, line.b))  # the referee: ground truth alone, no counting rules
    m = mot_metrics(gt, hyp)
    print(f"frames {pipe.stats.frames}, detector ran on {pipe.stats.detections}; "
          f"FN {m['fn']} FP {m['fp']} ID switches {m['idsw']} of {m['gt']} boxes; truth: every side change of a "
          f"GT box's bottom-centre over the segment held {MIN_FRAMES}+ frames")
    print(f"RESULT in={line.counts['in']} out={line.counts['out']} gt_in={truth['in']} gt_out={truth['out']} "
          f"mota={m['mota']:.3f} idf1={m['idf1']:.3f}")
    return 0


def _writer(args: argparse.Namespace) -> Any:
    if not getattr(args, "annotate", None):
        return None
    from edge_agent.vision.annotate import Writer

    return Writer(Path(args.annotate))


def cmd_run(args: argparse.Namespace) -> int:
    from edge_agent.vision.annotate import draw
    from edge_agent.vision.sources import SourceUnavailable, frame_count, open_source

    lines = [parse_line(t, f"line{i + 1}") for i, t in enumerate(args.line)]
    pipe = build_pipeline(args, lines)
    writer = _writer(args)
    progress = Progress(frame_count(args.source))
    try:
        for i, f in enumerate(open_source(args.source), 1):
            r = pipe.process(lambda f=f: f.image, f.index, f.t)
            for c in r.crossings:
                print(f"\nframe {c.frame}: track {c.track} {c.direction} over {c.line}", file=sys.stderr)
            if writer:
                writer.write(draw(f.image, r.tracks, lines))
            progress.update(i)
            if args.max_frames and i >= args.max_frames:
                break
        for c in pipe.close(pipe.stats.frames):
            print(f"\nframe {c.frame}: track {c.track} {c.direction} over {c.line} (held to the end)", file=sys.stderr)
    except SourceUnavailable as err:
        print(f"source unavailable: {err}", file=sys.stderr)
        return 1
    finally:
        if writer:
            writer.close()
    progress.finish()
    for name, c in pipe.counts().items():
        print(f"{name}: in {c['in']} out {c['out']}")
    # End to end (wall clock: decoding every frame, the skipped ones too) is what a camera must keep up with;
    # the pipeline's own time leaves out the decoding of frames it skipped.
    print(f"frames {pipe.stats.frames}, detector ran on {pipe.stats.detections}, {progress.fps():.1f} fps end to "
          f"end (pipeline alone {pipe.stats.frames / max(pipe.stats.seconds, 1e-9):.1f} fps)")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    import runpy

    bench = Path(__file__).resolve().parents[2] / "bench" / "vision_fps.py"
    sys.argv = [str(bench), "--video", args.video]
    runpy.run_path(str(bench), run_name="__main__")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    v = sub.add_parser("vision", help="People counting: run on a source, evaluate on MOT data, benchmark.")
    vs = v.add_subparsers(dest="vision_cmd", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--model", default=None, help="Model folder with manifest.json (default models/yolox_nano).")
        p.add_argument("--threads", type=int, default=2, help="onnxruntime intra-op threads.")
        p.add_argument("--providers", default="CPUExecutionProvider",
                       help="onnxruntime providers in order, comma-separated (TensorrtExecutionProvider,"
                            "CUDAExecutionProvider,CPUExecutionProvider).")
        p.add_argument("--provider-fallback", action="store_true",
                       help="Run on the providers present (logged) instead of failing on a missing one.")
        p.add_argument("--stride", type=int, default=4, help="Detect every n-th frame (motion gating on).")
        p.add_argument("--every-frame", action="store_true", help="Detect on every frame (no gating).")
        p.add_argument("--annotate", default=None, help="Write annotated frames: out.mp4 / out.avi / a folder of PNGs.")

    r = vs.add_parser("run", help="Count people crossing lines on a camera, stream, video file or image folder.")
    r.add_argument("--source", required=True, help="Camera index, rtsp:// or http:// URL, video file or folder.")
    r.add_argument("--line", action="append", required=True, help="X1,Y1,X2,Y2 in pixels (repeatable).")
    r.add_argument("--max-frames", type=int, default=0, help="Stop after this many frames (0 = all).")
    common(r)
    r.set_defaults(fn=cmd_run)
    e = vs.add_parser("eval", help="Counts and MOTA/IDF1 against a MOT-format sequence's ground truth.")
    e.add_argument("--sequence", required=True, help="MOT sequence folder (img1/, gt/gt.txt).")
    e.add_argument("--line", required=True, type=parse_line, help="X1,Y1,X2,Y2 in pixels.")
    common(e)
    e.set_defaults(fn=cmd_eval)
    b = vs.add_parser("bench", help="Decode vs every-frame vs gated frames/s on a video (bench/vision_fps.py).")
    b.add_argument("--video", default="tests/fixtures/pets09_s2l1_view1_480x360.avi", help="Video file.")
    b.set_defaults(fn=cmd_bench)
