"""Vision: pure counting geometry, decoders on crafted tensors, model checks, real frames end to end.

The TUD-Campus fixture (tests/fixtures/tud_campus) carries research-use terms: see tests/fixtures/DATA-TERMS.md.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edge_agent.vision.counting import LineCounter, Occupancy, Zone, point_in_polygon
from edge_agent.vision.evaluate import count_crossings, load_mot, mot_metrics
from edge_agent.vision.geometry import iou_matrix, nms

FIX = Path(__file__).parent / "fixtures"
TUD = FIX / "tud_campus"


def walk(counter: LineCounter, track: int, points: list[tuple[float, float]], confirmed: bool = True,
         start: int = 1) -> list[str]:
    got = []
    for i, (x, y) in enumerate(points):
        c = counter.update(track, x, y, start + i, confirmed)
        if c:
            got.append(c.direction)
    return got


def test_direction_follows_the_sign_rule() -> None:
    # A=(0,0) B=(0,100): s = -100 * x, so x < 0 is the positive side; positive -> negative is "in".
    ln = LineCounter("l", (0, 0), (0, 100), margin=5)
    assert walk(ln, 1, [(-20, 50), (-10, 50), (10, 50), (20, 50)]) == ["in"]
    assert walk(ln, 2, [(20, 50), (-20, 50), (-25, 50)]) == ["out"]
    assert ln.counts == {"in": 1, "out": 1}


def test_jitter_on_the_line_does_not_double_count() -> None:
    ln = LineCounter("l", (0, 0), (0, 100), margin=5)
    path = [(-20, 50)] + [(x, 50) for x in (-3, 2, -4, 3, -1, 4, -2, 3)] * 5 + [(20, 50), (24, 50)]
    assert walk(ln, 1, path) == ["in"]


def test_every_held_crossing_counts_but_an_excursion_does_not() -> None:
    ln = LineCounter("l", (0, 0), (0, 100), margin=5)
    # In, out and in again (a wanderer, PETS09-S2L1 has several): three crossings, not capped at one each way.
    held = [(-20, 50), (20, 50), (25, 50), (-20, 50), (-25, 50), (20, 50), (25, 50)]
    assert walk(ln, 1, held) == ["in", "out", "in"]
    # Beyond the margin for one observation each time, then back: excursions, never counted.
    assert walk(ln, 2, [(-20, 50), (20, 50), (-20, 50), (20, 50), (-20, 50), (-25, 50)]) == []
    assert ln.counts == {"in": 2, "out": 1}


def test_a_side_change_held_until_the_track_ends_counts_once_confirmed() -> None:
    ln = LineCounter("l", (0, 0), (0, 100), margin=5)
    assert walk(ln, 1, [(-20, 50), (-10, 50), (20, 50)]) == []  # seen once beyond: not yet held
    assert [c.direction for c in ln.finish(1, 9)] == ["in"]  # the person left the picture over there
    assert walk(ln, 2, [(-20, 50), (20, 50)], confirmed=False, start=20) == []
    assert ln.finish(2, 30) == []  # a tentative track's crossing never counts
    assert ln.counts == {"in": 1, "out": 0}


def test_the_hysteresis_margin_shrinks_for_small_distant_people() -> None:
    # 8 px is a fifth of a 40 px tall person far from the camera: with the box height the margin becomes
    # 10 % of it, so a small walker who stops 5 px past the line still counts; a tall one does not.
    far = LineCounter("l", (0, 0), (0, 100))
    got = [far.update(1, x, 50, f, True, height=40) for f, x in enumerate([-12, -8, -4, 1, 5, 6], 1)]
    assert [c.direction for c in got if c] == ["in"]
    near = LineCounter("l", (0, 0), (0, 100))
    got = [near.update(1, x, 50, f, True, height=200) for f, x in enumerate([-12, -8, -4, 1, 5, 6], 1)]
    assert [c for c in got if c] == []


def test_an_id_swapped_onto_someone_across_the_line_is_no_crossing() -> None:
    # TUD-Campus: the tracker moves an id from a near person onto one behind, whose feet are far higher up.
    ln = LineCounter("l", (0, 100), (400, 100))  # horizontal; below it (y > 100) is side > 0: up is "in"
    frames = [(1, 130), (2, 131), (3, 130), (4, -30), (5, -31), (6, -32)]
    got = [ln.update(1, 200, y, f, True, height=230) for f, y in frames]
    assert [c for c in got if c] == []
    # the same path at a walker's pace (a few pixels a frame) is a crossing
    walk_up = [(f, 130 - 10 * (f - 1)) for f in range(1, 12)]
    got = [ln.update(2, 200, y, f, True, height=230) for f, y in walk_up]
    assert [c.direction for c in got if c] == ["in"]


def test_crossing_outside_the_segment_does_not_count() -> None:
    ln = LineCounter("l", (0, 0), (0, 100), margin=5)
    assert walk(ln, 1, [(-20, 150), (20, 150)]) == []
    assert walk(ln, 2, [(-20, -10), (20, -10)]) == []
    assert walk(ln, 3, [(-20, 99), (20, 99), (25, 99)]) == ["in"]


def test_tentative_track_counts_only_once_confirmed() -> None:
    ln = LineCounter("l", (0, 0), (0, 100), margin=5)
    assert walk(ln, 1, [(-20, 50), (20, 50)], confirmed=False) == []
    assert ln.counts["in"] == 0
    assert walk(ln, 1, [(25, 50)], confirmed=True, start=3) == ["in"]
    ln.update(2, -20, 50, 1, False)
    ln.update(2, 20, 50, 2, False)
    ln.finish(2, 3)  # never confirmed: never counted
    assert ln.counts["in"] == 1


def test_id_switch_near_the_line_inherits_state() -> None:
    ln = LineCounter("l", (0, 0), (0, 100), margin=5)
    assert walk(ln, 1, [(-30, 50), (-20, 50), (10, 50), (20, 50)]) == ["in"]
    ln.finish(1, 5)
    # the tracker lost id 1 and restarted the same person as id 7 right there
    assert walk(ln, 7, [(22, 50), (-20, 50), (-25, 50)], start=6) == ["out"]


def test_re_birth_on_the_far_side_inherits_while_the_old_track_is_still_kept() -> None:
    ln = LineCounter("l", (0, 0), (0, 100), margin=5)
    walk(ln, 1, [(-30, 50), (-20, 50), (-8, 50)])  # then lost in a group, never finished by the tracker
    assert walk(ln, 2, [(12, 50), (20, 50)], start=6) == ["in"]  # re-born over the line 3 frames later
    assert walk(ln, 1, [(20, 50), (25, 50)], start=9) == []  # the old id comes back: no second count
    assert walk(ln, 3, [(-20, 50), (20, 50), (25, 50)], start=40) == ["in"]  # far in time: its own track
    assert ln.counts == {"in": 2, "out": 0}


def test_zone_occupancy_and_dwell() -> None:
    square = [(0, 0), (10, 0), (10, 10), (0, 10)]
    assert point_in_polygon(5, 5, square) and not point_in_polygon(15, 5, square)
    z = Zone("queue", square)
    z.update(1, 5, 5, 100.0)
    z.update(2, 6, 6, 101.0)
    assert z.occupancy == 2
    z.update(1, 20, 5, 130.0)
    z.finish(2, 111.0)
    assert z.occupancy == 0 and z.dwells == [30.0, 10.0]
    with pytest.raises(ValueError):
        Zone("bad", [(0, 0), (1, 1)])


def test_occupancy_drift_correction() -> None:
    occ = Occupancy(ins=120, outs=100)
    assert occ.value == 20
    occ.correct_to(15)
    occ.ins += 3
    assert occ.value == 18


def test_nms_and_iou() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], float)
    assert list(nms(boxes, np.array([0.9, 0.8, 0.7]), 0.5)) == [0, 2]
    assert iou_matrix(boxes[:1], boxes[:1])[0, 0] == pytest.approx(1.0)


def test_yolox_decoder_on_a_crafted_tensor() -> None:
    from edge_agent.vision.detector import decode_yolov8, decode_yolox

    out = np.zeros((3549, 85), np.float32)
    # anchor 0 of the stride-8 grid (cell 0,0), anchor for cell (x=3, y=2) of stride 16: 52*52 + 2*26 + 3
    out[52 * 52 + 2 * 26 + 3, :4] = [0.5, 0.25, np.log(2.0), np.log(4.0)]
    out[52 * 52 + 2 * 26 + 3, 4:6] = [0.9, 0.8]
    boxes, scores = decode_yolox(out, 416)
    i = int(np.argmax(scores))
    cx, cy, w, h = (3 + 0.5) * 16, (2 + 0.25) * 16, 2 * 16, 4 * 16
    assert scores[i] == pytest.approx(0.72)
    assert boxes[i] == pytest.approx([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])
    v8 = np.zeros((84, 10), np.float32)
    v8[:4, 3] = [100, 50, 20, 40]
    v8[4, 3] = 0.95
    b8, s8 = decode_yolov8(v8)
    assert s8[3] == pytest.approx(0.95) and b8[3] == pytest.approx([90, 30, 110, 70])


def test_model_checksum_and_missing_model_fail_clearly(tmp_path: Path) -> None:
    from edge_agent.vision.detector import ModelError, OnnxDetector, default_model_dir

    bad = tmp_path / "m"
    shutil.copytree(default_model_dir(), bad)
    with open(bad / "yolox_nano.onnx", "r+b") as f:
        f.seek(1000)
        f.write(b"\x00\x01\x02")
    with pytest.raises(ModelError, match="sha256"):
        OnnxDetector(bad)
    (bad / "yolox_nano.onnx").unlink()
    with pytest.raises(ModelError, match="missing"):
        OnnxDetector(bad)
    with pytest.raises(ModelError, match="manifest"):
        OnnxDetector(tmp_path)
    with pytest.raises(ModelError, match="providers"):
        OnnxDetector(default_model_dir(), providers=["TensorrtExecutionProvider"])


def test_ground_truth_crossings_and_perfect_metrics() -> None:
    gt = load_mot(TUD / "gt" / "gt.txt")
    assert count_crossings(gt, LineCounter("l", (320, 0), (320, 480))) == {"in": 4, "out": 1}
    m = mot_metrics(gt, gt)
    assert m["mota"] == pytest.approx(1.0) and m["idf1"] == pytest.approx(1.0)
    swapped = {f: {(99 if i == 3 and f > 30 else i): b for i, b in boxes.items()} for f, boxes in gt.items()}
    assert mot_metrics(gt, swapped)["idsw"] == 1


def test_eval_cli_on_real_frames_matches_ground_truth(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "edge_agent", "vision", "eval", "--sequence", str(TUD),
                          "--line", "320,0,320,480", "--annotate", str(tmp_path / "png")],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    result = dict(kv.split("=") for kv in out.stdout.strip().splitlines()[-1].split()[1:])
    assert (result["in"], result["out"], result["gt_in"], result["gt_out"]) == ("4", "1", "4", "1")
    assert float(result["mota"]) > 0.3 and float(result["idf1"]) > 0.4
    assert len(list((tmp_path / "png").glob("*.png"))) == 71


def test_eval_works_on_any_image_size_and_length(tmp_path: Path) -> None:
    """A cropped, shortened copy of the sequence with its ground truth shifted accordingly."""
    import cv2

    seq = tmp_path / "crop"
    (seq / "img1").mkdir(parents=True)
    (seq / "gt").mkdir()
    for i in range(1, 31):
        img = cv2.imread(str(TUD / "img1" / f"{i:06d}.jpg"))
        cv2.imwrite(str(seq / "img1" / f"{i:06d}.jpg"), img[40:440, 20:620])
    rows = [r.split(",") for r in (TUD / "gt" / "gt.txt").read_text().split()]
    kept = [f"{r[0]},{r[1]},{float(r[2]) - 20},{float(r[3]) - 40},{r[4]},{r[5]},-1" for r in rows if int(r[0]) <= 30]
    (seq / "gt" / "gt.txt").write_text("\n".join(kept) + "\n")
    out = subprocess.run([sys.executable, "-m", "edge_agent", "vision", "eval", "--sequence", str(seq),
                          "--line", "300,0,300,400"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1].startswith("RESULT in=")


def test_bad_line_and_missing_sequence_are_clear_errors(tmp_path: Path) -> None:
    bad = subprocess.run([sys.executable, "-m", "edge_agent", "vision", "eval", "--sequence", str(TUD),
                          "--line", "1,2,3"], capture_output=True, text=True)
    assert bad.returncode == 2 and "X1,Y1,X2,Y2" in bad.stderr
    missing = subprocess.run([sys.executable, "-m", "edge_agent", "vision", "eval", "--sequence", str(tmp_path),
                              "--line", "1,2,3,4"], capture_output=True, text=True)
    assert missing.returncode == 2 and "gt/gt.txt" in missing.stderr


@pytest.mark.parametrize("snapshots", [False, True])
def test_vision_producer_feeds_the_outbox(tmp_path: Path, snapshots: bool) -> None:
    import json
    import threading

    from edge_agent.core.ports import Context
    from edge_agent.records import DataClass
    from edge_agent.registry import REGISTRY, AgentConfig
    from edge_agent.store import Outbox
    from tests.helpers import outbox_records

    cfg = AgentConfig.model_validate({
        "device": {"id": "cam-01", "site": "campus"},
        "producers": [{"type": "vision", "name": "door", "source": str(TUD), "interval_s": 30,
                       "lines": [{"name": "door", "points": [320, 0, 320, 480]}],
                       **({"snapshot_dir": str(tmp_path / "snaps"), "snapshot_keep": 3} if snapshots else {})}]})
    stop = threading.Event()
    with Outbox(tmp_path / "o.db") as ob:
        prod = REGISTRY.build(cfg.producers[0], Context(ob, boot=1))
        t = threading.Thread(target=prod.run, args=(stop,))
        t.start()
        try:
            from tests.helpers import wait_for

            # 71 frames at one per second: intervals [0,30) [30,60) [60,90), the last flushed at the end
            wait_for(lambda: ob.fetch(DataClass.MEASUREMENT, 0, limit=1000).kind.count("vision.count") == 3, 60,
                     "three interval counts")
        finally:
            stop.set()
            t.join(10)
        counts = outbox_records(ob, DataClass.MEASUREMENT, "vision.count")
        crossings = outbox_records(ob, DataClass.MEASUREMENT, "vision.crossing")
        states = {k: json.loads(b) for k, b in zip(ob.fetch(DataClass.STATE, 0).kind, ob.fetch(DataClass.STATE, 0).body,
                                                   strict=True)}
    total_in = sum(c["lines"]["door"]["in"] for c in counts)
    total_out = sum(c["lines"]["door"]["out"] for c in counts)
    assert (total_in, total_out) == (4, 1) and len(crossings) == 5
    assert states["vision.occupancy"]["inside"] == 3 and states["vision.camera"]["available"] is True
    images = [p for p in tmp_path.rglob("*") if p.suffix.lower() in (".jpg", ".png")]
    if snapshots:  # one per crossing, rotated down to snapshot_keep, and real images
        import cv2

        assert len(images) == 3 and all(cv2.imread(str(p)).shape == (480, 640, 3) for p in images)
    else:
        assert images == []  # privacy by default: no image written anywhere


def test_unavailable_camera_is_reported_not_fatal(tmp_path: Path) -> None:
    import json
    import threading

    from edge_agent.core.ports import Context
    from edge_agent.records import DataClass
    from edge_agent.store import Outbox
    from edge_agent.vision.config import VisionProducerConfig
    from edge_agent.vision.producer import VisionProducer
    from tests.helpers import wait_for

    cfg = VisionProducerConfig.model_validate({"type": "vision", "source": str(tmp_path / "gone.mp4"),
                                              "lines": [{"name": "l", "points": [0, 0, 1, 1]}]})
    stop = threading.Event()
    with Outbox(tmp_path / "o.db") as ob:
        t = threading.Thread(target=VisionProducer(cfg, Context(ob)).run, args=(stop,))
        t.start()
        try:
            rows = wait_for(lambda: ob.fetch(DataClass.STATE, 0).body, 30, "camera state")
        finally:
            stop.set()
            t.join(10)
        assert t.is_alive() is False
    assert json.loads(rows[0])["available"] is False


def test_gate_decisions() -> None:
    from edge_agent.vision.gating import Gate, GateConfig

    g = Gate(GateConfig(stride=4, idle_every=10, motion_threshold=0.01))
    assert g.should_detect(0.0, 0, False)  # first frame always
    assert [g.should_detect(0.0, 0, False) for _ in range(10)] == [False] * 9 + [True]  # idle: every 10th
    assert g.should_detect(0.5, 0, False)  # motion with nothing tracked: look now
    assert [g.should_detect(0.0, 3, False) for _ in range(4)] == [False, False, False, True]  # stride 4
    assert g.should_detect(0.0, 3, True)  # a crossing is predicted: detect now


def test_gate_stride_adapts_to_cpu_pressure() -> None:
    from edge_agent.vision.gating import Gate, GateConfig

    g = Gate(GateConfig(stride=2, max_stride=5, frame_budget_s=0.1))
    for _ in range(10):
        g.observe_load(0.2)  # frames take twice the budget
    assert g.stride == 5
    for _ in range(10):
        g.observe_load(0.01)
    assert g.stride == 2
    fixed = Gate(GateConfig(stride=3))
    fixed.observe_load(10.0)
    assert fixed.stride == 3, "no budget (files): no adaptation"


def test_dropped_http_stream_is_reopened_with_backoff(caplog: pytest.LogCaptureFixture) -> None:
    """A real MJPEG-over-HTTP camera that drops its stream, then refuses for a while, then comes back:
    the source reconnects with backoff and frames keep coming with increasing indices."""
    import http.server
    import socketserver
    import threading

    import cv2

    from edge_agent.core.backoff import Backoff
    from edge_agent.vision.sources import video

    connections: list[int] = []

    class Camera(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            connections.append(1)
            if len(connections) in (2, 3):  # the camera is rebooting: refuse twice
                self.send_error(503)
                return
            self.send_response(200)
            self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
            self.end_headers()
            for i in range(15):  # then the stream drops mid-way
                ok, jpg = cv2.imencode(".jpg", np.full((96, 128, 3), i * 12, np.uint8))
                self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(jpg))
                self.wfile.write(jpg.tobytes() + b"\r\n")

        def log_message(self, *args: object) -> None:
            pass

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Camera)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/stream.mjpg"
    indices = []
    try:
        with caplog.at_level("WARNING"):
            for frame in video(url, live=True, backoff=Backoff(0.05, 0.2)):
                assert frame.image.shape == (96, 128, 3)
                indices.append(frame.index)
                if len(indices) >= 25:
                    break
    finally:
        server.shutdown()
        server.server_close()
    assert len(connections) >= 4  # first stream, two refusals, the stream again
    assert indices == sorted(set(indices)) and len(indices) == 25
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "stream ended; reconnecting" in messages and "unavailable; retrying" in messages


def test_a_predicted_position_never_counts_a_crossing() -> None:
    """Someone walks up to the line and stops on it (within the margin). Between detections the tracker's
    prediction carries them past it; only observed positions may count, as when detecting every frame
    (before this rule the prediction counted an "in" here)."""
    from edge_agent.vision.gating import GateConfig
    from edge_agent.vision.pipeline import Pipeline

    frame = [0]

    class Scripted:
        def detect(self, image: np.ndarray) -> np.ndarray:
            x = 4 + 3 * min(frame[0], 32)  # walks right at 3 px/frame, stops at x = 100, on the line
            return np.array([[x - 30, 40, x + 30, 160, 0.9]], np.float32)

    line = LineCounter("door", (100, 0), (100, 200))
    # look-ahead 0: nothing forces a detection near the line; stride 8 leaves long predicted stretches
    pipe = Pipeline(Scripted(), [line], gate=GateConfig(stride=8, max_stride=8, lookahead=0.0))  # type: ignore[arg-type]
    predicted_over = False
    for frame[0] in range(64):
        r = pipe.process(np.zeros((200, 200, 3), np.uint8), frame[0])
        predicted_over |= any(t.age > 0 and (t.box[0] + t.box[2]) / 2 > 108 for t in r.tracks)
    assert predicted_over, "the scenario must carry a prediction past the line's margin"
    assert line.counts == {"in": 0, "out": 0} and pipe.stats.detections == 8
