"""The camera jobs as configurations of the vision producer, on real footage, into a real outbox.

- e-fence and crowd density on TUD-Campus (71 frames, ground truth): the expected events come from the ground
  truth's boxes fed through the same pure core (vision/jobs.py), and the camera must match them within a
  few frames. Frame times are the folder's (1 s per frame); the wall clock is injected (ManualClock).
- vehicles: no car-park footage ships. The class filter is tested on TUD (people cross, no car does) and on a
  real photo with a pickup truck (YOLOX's assets/dog.jpg, Apache-2.0, tests/fixtures/vehicles/README.md)
  panned 8 px a frame so that the truck crosses the entrance line: a synthetic camera motion over a real
  vehicle, not car-park video.
"""

from __future__ import annotations

import collections
import datetime as dt
import threading
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from edge_agent.core.clock import ManualClock
from edge_agent.core.ports import Context
from edge_agent.records import DataClass
from edge_agent.store import Outbox
from edge_agent.vision.config import VisionProducerConfig
from edge_agent.vision.jobs import Alarm, DensityZone, IntrusionZone, Levels, Schedule
from edge_agent.vision.producer import VisionProducer
from tests.helpers import outbox_records, wait_for

FIX = Path(__file__).parent / "fixtures"
TUD = FIX / "tud_campus"
TRUCK = FIX / "vehicles" / "yolox_dog.jpg"
TZ = ZoneInfo("Asia/Shanghai")
FENCE = [(0.0, 380.0), (200.0, 380.0), (200.0, 480.0), (0.0, 480.0)]  # bottom-left corner of the walkway
SKY = [(0.0, 0.0), (640.0, 0.0), (640.0, 120.0), (0.0, 120.0)]  # nobody's feet are ever there
WALKWAY = [(0.0, 330.0), (640.0, 330.0), (640.0, 480.0), (0.0, 480.0)]


def local(hour: int) -> float:
    return dt.datetime(2026, 11, 25, hour, 0, tzinfo=TZ).timestamp()


def run_camera(tmp_path: Path, cfg: dict[str, Any], start: float) -> Outbox:
    """Run one camera over a file source to the end (the last interval flushed) into a fresh outbox."""
    c = VisionProducerConfig.model_validate({"type": "vision", "interval_s": 1000, "emit_crossings": True, **cfg})
    ob = Outbox(tmp_path / f"{c.name}.db")
    stop = threading.Event()
    t = threading.Thread(target=VisionProducer(c, Context(ob, clock=ManualClock(start))).run, args=(stop,))
    t.start()
    try:
        wait_for(lambda: "vision.count" in ob.fetch(DataClass.MEASUREMENT, 0, limit=10_000).kind, 120, "the end")
    finally:
        stop.set()
        t.join(10)
    return ob


def gt_anchors() -> dict[int, list[tuple[float, float]]]:
    by: dict[int, list[tuple[float, float]]] = collections.defaultdict(list)
    for row in (TUD / "gt" / "gt.txt").read_text().splitlines():
        f, _, x, y, w, h = (float(v) for v in row.split(",")[:6])
        by[int(f)].append((x + w / 2, y + h))
    return by


def truth_intrusion(start: float) -> list[tuple[str, float]]:
    z = IntrusionZone("fence", FENCE, Schedule(["08:00-17:30"], "Asia/Shanghai"), 5, 5, 2)
    gt = gt_anchors()
    return [("alarm" if isinstance(e, Alarm) else "cleared", e.at - start)
            for f in range(1, 72) for e in z.tick(start + f, gt[f])]


FENCE_CFG = {"name": "store-cam", "source": str(TUD), "every_frame": True, "intrusion": [
    {"name": "fence", "polygon": FENCE, "open_hours": ["08:00-17:30"], "min_s": 5, "clear_s": 5, "gap_s": 2},
    {"name": "roof", "polygon": SKY, "min_s": 5}]}


@pytest.mark.parametrize("every_frame", [True, False])
def test_efence_after_hours_alarms_and_clears_like_the_ground_truth(tmp_path: Path, every_frame: bool) -> None:
    """Gated too: a guarded zone holding a track makes the camera detect every frame (without that rule the
    gated camera missed the first visit and raised the second 9 s late)."""
    start = local(23)
    truth = truth_intrusion(start)
    assert [k for k, _ in truth] == ["alarm", "cleared", "alarm", "cleared"]  # two visits to the corner
    with run_camera(tmp_path, {**FENCE_CFG, "every_frame": every_frame}, start) as ob:
        got = outbox_records(ob, DataClass.TRANSACTION, "vision.intrusion")
        stamps = list(ob.fetch(DataClass.TRANSACTION, 0, limit=100).ts)
    assert {g["zone"] for g in got} == {"fence"}  # the empty zone never alarms
    assert [g["state"] for g in got] == [k for k, _ in truth]
    for (kind, when), ts in zip(truth, stamps, strict=True):
        assert abs((ts - start) - when) <= 3, f"{kind} at {ts - start:.0f} s, ground truth {when:.0f} s"


def test_efence_is_quiet_during_opening_hours(tmp_path: Path) -> None:
    with run_camera(tmp_path, FENCE_CFG, local(10)) as ob:
        assert outbox_records(ob, DataClass.TRANSACTION, "vision.intrusion") == []


def test_crowd_density_levels_on_the_walkway(tmp_path: Path) -> None:
    gt = gt_anchors()
    truth = DensityZone("walkway", WALKWAY, 5, Levels(hold_s=2))
    first = next(f for f in range(1, 72) if any(e.level == 1.0 for e in truth.tick(float(f), gt[f])))
    peak = max(sum(1 for x, y in gt[f] if y > 330) for f in gt)
    cfg = {"name": "square-cam", "source": str(TUD), "every_frame": True,
           "density": [{"name": "walkway", "polygon": WALKWAY, "capacity": 5, "hold_s": 2}]}
    start = local(12)
    with run_camera(tmp_path, cfg, start) as ob:
        alerts = outbox_records(ob, DataClass.TRANSACTION, "vision.density_alert")
        stamps = list(ob.fetch(DataClass.TRANSACTION, 0, limit=100).ts)
        state = outbox_records(ob, DataClass.STATE, "vision.density")
    # Ground truth: six people on the walkway from the start, so "full" (1.0) first; the camera too, within 3 s.
    assert alerts and alerts[0]["level"] == 1.0 and alerts[0]["previous"] == 0.0, alerts
    assert abs((stamps[0] - start) - first) <= 3, f"full at {stamps[0] - start:.0f} s, ground truth {first} s"
    assert all(a["level"] in (0.0, 0.8, 0.9, 1.0) for a in alerts)
    assert abs(state[-1]["zones"]["walkway"]["peak"] - peak) <= 1


def test_class_filter_on_real_footage_people_cross_no_vehicle_does(tmp_path: Path) -> None:
    line = [{"name": "door", "points": [320, 0, 320, 480]}]
    with run_camera(tmp_path, {"name": "people", "source": str(TUD), "lines": line}, local(12)) as ob:
        people = outbox_records(ob, DataClass.MEASUREMENT, "vision.crossing")
    with run_camera(tmp_path, {"name": "cars", "source": str(TUD), "lines": line,
                               "objects": ["car", "bus", "truck"]}, local(12)) as ob:
        cars = outbox_records(ob, DataClass.MEASUREMENT, "vision.crossing")
    assert len(people) >= 4 and cars == []  # ground truth: 5 people cross, no vehicle


@pytest.fixture
def panned_truck(tmp_path: Path) -> Path:
    """A real photo (pickup truck, bicycle, dog) panned 8 px a frame: the truck moves right to left."""
    import cv2

    img = cv2.imread(str(TRUCK))
    assert img is not None
    folder = tmp_path / "pan"
    folder.mkdir()
    for i, off in enumerate(range(0, 369, 8), 1):
        cv2.imwrite(str(folder / f"{i:06d}.jpg"), img[:, off:off + 400])
    return folder


@pytest.mark.parametrize("every_frame", [True, False])
def test_carpark_counts_the_truck_and_shows_free_spaces(tmp_path: Path, panned_truck: Path,
                                                        every_frame: bool) -> None:
    from edge_agent.sim.display import DisplaySim

    # The entrance line drawn bottom to top: right → left is "in" (a car arriving).
    cfg = {"name": "carpark-cam", "source": str(panned_truck), "every_frame": every_frame,
           "objects": ["car", "bus", "truck"], "lines": [{"name": "entry", "points": [260, 576, 260, 0]}]}
    board = DisplaySim()
    try:
        cfg["carpark"] = {"capacity": 2, "line": "entry", "display": {"port": board.path}}
        with run_camera(tmp_path, cfg, local(12)) as ob:
            crossings = outbox_records(ob, DataClass.MEASUREMENT, "vision.crossing")
            state = outbox_records(ob, DataClass.STATE, "vision.carpark")
        wait_for(lambda: "空位 1/2" in board.text(), 10, "the board to show one free space")
    finally:
        board.close()
    assert [(c["line"], c["dir"]) for c in crossings] == [("entry", "in")]
    assert state[-1] == {"camera": "carpark-cam", "capacity": 2, "inside": 1, "free": 1}


def test_person_camera_ignores_the_truck(tmp_path: Path, panned_truck: Path) -> None:
    cfg = {"name": "people-cam", "source": str(panned_truck), "every_frame": True,
           "lines": [{"name": "entry", "points": [260, 576, 260, 0]}]}
    with run_camera(tmp_path, cfg, local(12)) as ob:
        assert outbox_records(ob, DataClass.MEASUREMENT, "vision.crossing") == []


def test_two_cameras_share_one_detector_session(tmp_path: Path) -> None:
    """Two camera roles naming one detector: one session in the process pool, both cameras' frames through it,
    and each camera's counts what it gets alone."""
    from edge_agent.vision.session import POOL

    line = [{"name": "door", "points": [320, 0, 320, 480]}]
    cfgs = [VisionProducerConfig.model_validate({"type": "vision", "name": f"cam{i}", "source": str(TUD),
                                                 "lines": line, "every_frame": True, "detector": "pair-test",
                                                 "interval_s": 1000}) for i in (1, 2)]
    obs = [Outbox(tmp_path / f"{c.name}.db") for c in cfgs]
    stop = threading.Event()
    threads = [threading.Thread(target=VisionProducer(c, Context(ob)).run, args=(stop,))
               for c, ob in zip(cfgs, obs, strict=True)]
    for t in threads:
        t.start()
    try:
        for ob in obs:
            wait_for(lambda ob=ob: "vision.count" in ob.fetch(DataClass.MEASUREMENT, 0, limit=1000).kind, 120, "end")
    finally:
        stop.set()
        for t in threads:
            t.join(10)
    session = POOL.loaded("pair-test")
    assert session is not None and session.frames == 2 * 71  # every frame of both cameras through the one session
    with obs[0], obs[1]:
        counts = [outbox_records(ob, DataClass.MEASUREMENT, "vision.count")[-1]["lines"]["door"] for ob in obs]
    with run_camera(tmp_path / "alone", {"name": "alone", "source": str(TUD), "lines": line,
                                         "every_frame": True}, local(12)) as ob:
        alone = outbox_records(ob, DataClass.MEASUREMENT, "vision.count")[-1]["lines"]["door"]
    assert counts == [alone, alone]
