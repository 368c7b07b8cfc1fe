"""The camera jobs' pure cores (vision/jobs.py): e-fence schedules and timers, density levels, car-park
spaces, provider choice, the shared session's batching rule. No cv2, no model: time is passed in."""

from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from pydantic import ValidationError

from edge_agent.vision.config import VisionProducerConfig
from edge_agent.vision.detector import ModelError
from edge_agent.vision.jobs import (
    Alarm,
    CarPark,
    Cleared,
    DensityZone,
    IntrusionZone,
    Levels,
    Schedule,
    carpark_rows,
    parse_span,
)
from edge_agent.vision.session import SessionPool, SessionSpec, resolve_providers

TZ = ZoneInfo("Asia/Shanghai")
SQUARE = [(0.0, 0.0), (100.0, 0.0), (100.0, 100.0), (0.0, 100.0)]
IN, OUT = (50.0, 50.0), (500.0, 500.0)


def at(hour: int, minute: int = 0) -> float:
    return dt.datetime(2026, 11, 25, hour, minute, tzinfo=TZ).timestamp()


def test_schedule_spans_and_overnight() -> None:
    s = Schedule(["08:00-17:30"], "Asia/Shanghai")
    assert s.is_open(at(8)) and s.is_open(at(17, 29)) and not s.is_open(at(17, 30)) and not s.is_open(at(7, 59))
    night = Schedule(["22:00-06:00"], "Asia/Shanghai")
    assert night.is_open(at(23)) and night.is_open(at(5)) and not night.is_open(at(12))
    assert not Schedule([], "Asia/Shanghai").is_open(at(12))  # no opening hours: guarded all day
    with pytest.raises(ValueError, match="HH:MM"):
        parse_span("8-17h")
    with pytest.raises(ValueError, match="empty"):
        parse_span("08:00-08:00")


def fence(min_s: float = 5, clear_s: float = 4, gap_s: float = 2) -> IntrusionZone:
    return IntrusionZone("store", SQUARE, Schedule(["08:00-17:30"], "Asia/Shanghai"), min_s, clear_s, gap_s)


def run(z: IntrusionZone, start: float, frames: list[list[tuple[float, float]]], dt_s: float = 1.0) -> list:
    events = []
    for i, pts in enumerate(frames):
        events += z.tick(start + i * dt_s, pts)
    return events


def test_intrusion_after_hours_alarms_after_min_s_then_clears() -> None:
    z = fence()
    ev = run(z, at(21), [[IN]] * 7 + [[]] * 6)
    assert [type(e) for e in ev] == [Alarm, Cleared]
    assert ev[0].at - ev[0].since == 5 and ev[0].people == 1
    assert ev[1].at == at(21) + 6 + 4  # last seen at +6 s, cleared 4 s later


def test_no_alarm_during_opening_hours_nor_for_a_short_visit() -> None:
    assert run(fence(), at(10), [[IN]] * 30) == []
    assert run(fence(), at(21), [[IN]] * 4 + [[OUT]] * 10 + [[IN]] * 4) == []  # two short visits, a long gap
    assert run(fence(), at(21), [[OUT]] * 30) == []  # someone outside the polygon


def test_a_guarded_zone_with_someone_inside_asks_for_detection() -> None:
    z = fence()
    assert z.watching(at(21), [OUT, IN]) and not z.watching(at(21), [OUT]) and not z.watching(at(10), [IN])


def test_missed_detections_shorter_than_gap_do_not_restart_the_timer() -> None:
    # present, 1 frame missed, present...: 6 s of presence in total → alarm despite the holes
    ev = run(fence(gap_s=2), at(21), [[IN], [IN], [], [IN], [IN], [], [IN], [IN]])
    assert [type(e) for e in ev] == [Alarm]
    # holes longer than gap_s restart it: never 5 s in a row
    assert run(fence(gap_s=2), at(21), [[IN]] * 4 + [[]] * 3 + [[IN]] * 4) == []


def test_alarm_holds_through_short_absences_and_fires_once() -> None:
    ev = run(fence(clear_s=4), at(21), [[IN]] * 6 + [[], [], [IN]] * 5 + [[]] * 5)
    assert [type(e) for e in ev] == [Alarm, Cleared]


def test_someone_left_inside_at_closing_time_raises_the_alarm_at_closing() -> None:
    z = fence()
    ev = run(z, at(17, 28), [[IN]] * 200)  # 17:28 → 17:31:20
    assert len(ev) == 1 and ev[0].at == at(17, 30)


def test_density_levels_with_hysteresis_in_value_and_time() -> None:
    d = DensityZone("square", SQUARE, capacity=10, levels=Levels((0.8, 0.9, 1.0), 0.05, hold_s=3))
    crowd = [[IN] * n for n in [5, 8, 8, 8, 8, 9, 7, 9, 9, 9, 9, 8, 8, 8, 8, 7, 7, 7, 7]]
    levels = []
    for i, pts in enumerate(crowd):
        levels += [(i, e.level, e.previous) for e in d.tick(float(i), pts)]
    # 0.8 from t=1 → reported at t=4 (hold 3 s). 0.9 from t=5, but the one-frame dip to 0.7 at t=6 restarts
    # its clock: 0.9 from t=7 → t=10. 0.8 is below 0.9 − 0.05 → back to 0.8 from t=11 → t=14. 0.7 is below
    # 0.8 − 0.05 → level 0 from t=15 → t=18.
    assert levels == [(4, 0.8, 0.0), (10, 0.9, 0.8), (14, 0.8, 0.9), (18, 0.0, 0.8)]
    assert d.take_peak() == 9 and d.take_peak() == 7


def test_density_flicker_at_a_threshold_never_reports() -> None:
    d = DensityZone("square", SQUARE, capacity=10, levels=Levels(hold_s=2))
    ev = []
    for i in range(40):
        ev += d.tick(float(i), [IN] * (8 if i % 2 else 7))
    assert ev == []


def test_carpark_free_spaces_and_board_rows() -> None:
    cp = CarPark(3)
    for d in ["in", "in", "in", "in", "out"]:
        cp.passed(d)
    assert (cp.inside, cp.free) == (3, 0)
    assert carpark_rows(cp.free, cp.capacity)[1] == ("车位已满 FULL", "R")
    cp.passed("out")
    assert carpark_rows(cp.free, cp.capacity)[0] == ("空位 1/3", "G")
    for _ in range(5):
        cp.passed("out")
    assert (cp.inside, cp.free) == (0, 3)  # more outs than ins (a car there before start) never go negative
    cp.correct_to(2)
    assert cp.free == 1


def test_provider_choice_is_an_error_or_an_explicit_fallback(caplog: pytest.LogCaptureFixture) -> None:
    have = ["CPUExecutionProvider"]
    assert resolve_providers(["CPUExecutionProvider"], have, False) == ["CPUExecutionProvider"]
    with pytest.raises(ModelError, match="TensorrtExecutionProvider.*fallback"):
        resolve_providers(["TensorrtExecutionProvider", "CUDAExecutionProvider"], have, False)
    got = resolve_providers(["TensorrtExecutionProvider", "CUDAExecutionProvider"], have, True)
    assert got == ["CPUExecutionProvider"]
    assert "falling back" in caplog.text and "TensorrtExecutionProvider" in caplog.text
    assert resolve_providers(["CUDAExecutionProvider", "CPUExecutionProvider"], have, True) == have


def test_pool_shares_one_session_per_name_and_reloads_on_new_settings() -> None:
    made = []

    def factory(*args: object, **kw: object) -> object:
        made.append(args)
        return object()

    pool = SessionPool(factory)
    spec = SessionSpec(Path("m"), ("CPUExecutionProvider",), 2, False)
    a, b = pool.get("yolox", spec), pool.get("yolox", spec)
    assert a is b and len(made) == 1
    assert pool.get("other", spec) is not a and len(pool) == 2
    # Another spec under the same name can only come from a new config (one config is checked to agree): reload.
    c = pool.get("yolox", SessionSpec(spec.model, spec.providers, 4, False))
    assert c is not a and len(made) == 3 and pool.get("yolox", SessionSpec(spec.model, spec.providers, 4, False)) is c


def test_config_jobs_validation() -> None:
    base = {"type": "vision", "name": "cam", "source": "0"}
    with pytest.raises(ValidationError, match="give lines"):
        VisionProducerConfig(**base)
    with pytest.raises(ValidationError, match="carpark.line"):
        VisionProducerConfig(**base, lines=[{"name": "gate", "points": [0, 0, 10, 0]}],
                             carpark={"capacity": 10, "line": "entry"})
    with pytest.raises(ValidationError, match="HH:MM"):
        VisionProducerConfig(**base, intrusion=[{"name": "z", "polygon": SQUARE[:3], "open_hours": ["9-5"]}])
    with pytest.raises(ValidationError, match="time zone"):
        VisionProducerConfig(**base, intrusion=[{"name": "z", "polygon": SQUARE[:3], "timezone": "Mars/Olympus"}])
    cfg = VisionProducerConfig(**base, objects=["car", "bus", "truck"], density=[
        {"name": "d", "polygon": SQUARE, "capacity": 5}])
    assert cfg.class_ids() == (2, 5, 7)


def test_shared_session_runs_each_waiting_camera_once_with_the_batch() -> None:
    """Group commit: requests queued while an inference runs go together on the next turn."""
    from edge_agent.vision.session import SharedSession

    s = SharedSession.__new__(SharedSession)  # the batching logic only, on a fake model call
    s.batch, s.max_batch, s.calls, s.frames = None, 8, 0, 0
    s._run_lock, s._mutex, s._pending = threading.Lock(), threading.Lock(), []
    gate = threading.Event()
    batches: list[int] = []

    class FakeOrt:
        input_name = "images"

        def run(self, _: object, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
            gate.wait(5)
            x = feed["images"]
            batches.append(len(x))
            return [x[:, :1, 0, 0][:, None] * 2]

    s.session, s.input_name = FakeOrt(), "images"
    results: dict[int, float] = {}

    def cam(i: int) -> None:
        results[i] = float(s.run(np.full((1, 3, 2, 2), i, np.float32))[0][0])

    threads = [threading.Thread(target=cam, args=(i,)) for i in range(1, 5)]
    threads[0].start()
    while not s._run_lock.locked():
        pass
    for t in threads[1:]:
        t.start()
    while len(s._pending) < 3:
        pass
    gate.set()
    for t in threads:
        t.join(5)
    assert results == {1: 2.0, 2: 4.0, 3: 6.0, 4: 8.0}  # each camera got its own frame's answer
    assert batches == [1, 3] and s.calls == 2 and s.frames == 4


def test_cameras_sharing_a_detector_must_agree_on_it() -> None:
    from edge_agent.registry import AgentConfig

    def cam(name: str, **kw: object) -> dict[str, object]:
        return {"type": "vision", "name": name, "source": "0", "lines": [{"name": "l", "points": [0, 0, 9, 0]}], **kw}

    ok = AgentConfig.model_validate({"device": {"id": "d", "site": "s"}, "producers": [
        cam("a", detector="yolo"), cam("b", detector="yolo"), cam("c", detector="gpu", threads=4)]})
    assert len(ok.producers) == 3
    with pytest.raises(ValidationError, match="'a' and 'b' share detector 'yolo' but set different threads"):
        AgentConfig.model_validate({"device": {"id": "d", "site": "s"}, "producers": [
            cam("a", detector="yolo"), cam("b", detector="yolo", threads=4)]})


def test_doctor_rows_for_detector_providers() -> None:
    from edge_agent.vision.session import provider_rows

    def cam(name: str, det: str, providers: list[str], fallback: bool = False) -> VisionProducerConfig:
        return VisionProducerConfig(type="vision", name=name, source="0", detector=det, providers=providers,
                                    provider_fallback=fallback, lines=[{"name": "l", "points": [0, 0, 9, 0]}])

    cams = [cam("a", "cpu", ["CPUExecutionProvider"]), cam("b", "cpu", ["CPUExecutionProvider"]),
            cam("c", "trt", ["TensorrtExecutionProvider", "CPUExecutionProvider"]),
            cam("d", "cuda", ["CUDAExecutionProvider"], fallback=True)]
    rows = provider_rows(cams, ["CPUExecutionProvider"])
    assert [(r[0], r[1]) for r in rows] == [("detector cpu (a, b)", "OK"), ("detector cuda (d)", "WARN"),
                                            ("detector trt (c)", "FAIL")]
    assert "falls back to ['CPUExecutionProvider']" in rows[1][2]
    assert provider_rows(cams[:1], None)[0][1] == "FAIL"  # onnxruntime not installed


def test_tensorrt_gets_its_engine_cache_and_precision(tmp_path: Path) -> None:
    from edge_agent.vision.session import provider_entries

    wanted = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert provider_entries(wanted) == wanted  # no options asked: plain names
    trt, cuda, cpu = provider_entries(wanted, tmp_path / "trt", trt_fp16=True)
    assert trt == ("TensorrtExecutionProvider", {"trt_fp16_enable": "True", "trt_engine_cache_enable": "True",
                                                 "trt_engine_cache_path": str(tmp_path / "trt")})
    assert (cuda, cpu) == ("CUDAExecutionProvider", "CPUExecutionProvider")
    assert provider_entries(["CPUExecutionProvider"], tmp_path) == ["CPUExecutionProvider"]
