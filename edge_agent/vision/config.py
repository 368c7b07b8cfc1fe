"""Config of a people-counting camera: pydantic only (cv2/onnxruntime load when the camera runs)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from edge_agent.config.models import IDENT, Base, DisplayConfig, RoleConfig

# COCO ids of the classes a camera may count (the shipped YOLOX-nano is a COCO model).
COCO = {"person": 0, "bicycle": 1, "car": 2, "motorcycle": 3, "bus": 5, "truck": 7}
ObjectClass = Literal["person", "bicycle", "car", "motorcycle", "bus", "truck"]
Polygon = list[tuple[float, float]]


class LineConfig(Base):
    name: str = Field(pattern=IDENT, description="Line name in counts and events.")
    points: tuple[float, float, float, float] = Field(description="X1, Y1, X2, Y2 in pixels; crossing from the "
                                                      "side where (X2-X1)(y-Y1)-(Y2-Y1)(x-X1) > 0 is 'in'.")
    margin_px: float = Field(8, ge=0, description="Hysteresis: distance beyond the line before a side change counts.")

    @model_validator(mode="after")
    def _distinct(self) -> LineConfig:
        if self.points[:2] == self.points[2:]:
            raise ValueError(f"line {self.name!r}: the two end points are the same")
        return self


class ZoneConfig(Base):
    name: str = Field(pattern=IDENT, description="Zone name.")
    polygon: list[tuple[float, float]] = Field(min_length=3, description="Polygon corners in pixels.")


def _hours(v: list[str]) -> list[str]:
    from edge_agent.vision.jobs import parse_span

    for span in v:
        parse_span(span)
    return v


class IntrusionConfig(Base):
    """E-fence: a person inside this polygon for ≥ min_s while the site is closed raises an alarm."""

    name: str = Field(pattern=IDENT, description="Zone name in alarm records.")
    polygon: Polygon = Field(min_length=3, description="Polygon corners in pixels.")
    open_hours: list[str] = Field(default_factory=list, description="Daily opening hours ('08:00-17:30', "
                                  "local time); no alarm while open. Empty: the zone is guarded at all hours.")
    timezone: str = Field("Asia/Shanghai", description="Time zone of open_hours.")
    min_s: float = Field(5, ge=0, description="Seconds someone must stay inside before the alarm.")
    clear_s: float = Field(5, gt=0, description="Seconds the zone must be empty before the alarm is cleared.")
    gap_s: float = Field(2, ge=0, description="Missed detections shorter than this do not restart the timer.")

    @model_validator(mode="after")
    def _check(self) -> IntrusionConfig:
        _hours(self.open_hours)
        from zoneinfo import ZoneInfo

        try:
            ZoneInfo(self.timezone)
        except (KeyError, ValueError) as err:
            raise ValueError(f"intrusion zone {self.name!r}: unknown time zone {self.timezone!r}") from err
        return self


class DensityConfig(Base):
    """Crowd density: people in this polygon against its capacity, with warning levels."""

    name: str = Field(pattern=IDENT, description="Zone name in density records.")
    polygon: Polygon = Field(min_length=3, description="Polygon corners in pixels.")
    capacity: int = Field(gt=0, description="People the zone holds safely (level 1.0).")
    thresholds: list[float] = Field([0.8, 0.9, 1.0], min_length=1, description="Ratios that raise a warning.")
    hysteresis: float = Field(0.05, ge=0, le=0.5, description="A level is left only this far below it.")
    hold_s: float = Field(3, ge=0, description="A new level must hold this long before it is reported.")


class CarparkConfig(Base):
    """Car park entrance: vehicles over `line` in/out, free spaces = capacity − inside, on an LED board."""

    capacity: int = Field(gt=0, description="Parking spaces.")
    line: str = Field(pattern=IDENT, description="The counting line at the entrance ('in' = a vehicle arrives).")
    display: DisplayConfig | None = Field(None, description="LED board showing the free spaces.")


Provider = Literal["CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider"]


class VisionProducerConfig(RoleConfig):
    """People counting on one camera: counts per interval, crossings, occupancy."""

    type: Literal["vision"] = Field(description="Producer plugin name.")
    name: str = Field("camera", pattern=IDENT, description="Camera name in records.")
    source: str = Field(description="Camera index, rtsp:// or http:// URL, video file or image folder.")
    lines: list[LineConfig] = Field(default_factory=list, description="Counting lines.")
    zones: list[ZoneConfig] = Field(default_factory=list, description="Zones for occupancy and dwell time.")
    interval_s: float = Field(60, gt=0, description="Aggregation interval of the count measurement.")
    emit_crossings: bool = Field(True, description="Also emit each crossing as a record.")
    stride: int = Field(4, ge=1, le=30, description="Detect every n-th frame (motion gating).")
    every_frame: bool = Field(False, description="Disable gating: detect on every frame.")
    objects: list[ObjectClass] = Field(["person"], min_length=1,
                                       description="What to detect and count: person, or car/bus/truck for vehicles.")
    intrusion: list[IntrusionConfig] = Field(default_factory=list, description="E-fence zones (alarms).")
    density: list[DensityConfig] = Field(default_factory=list, description="Crowd density zones (warnings).")
    carpark: CarparkConfig | None = Field(None, description="Free spaces of a car park from its entrance line.")
    detector: str = Field("default", pattern=IDENT,
                          description="Detector session name: cameras naming the same one share one onnxruntime "
                                      "session (and must agree on model, providers, threads, provider_fallback).")
    providers: tuple[Provider, ...] = Field(("CPUExecutionProvider",), min_length=1,
                                            description="onnxruntime providers, in order (TensorRT, CUDA, CPU).")
    provider_fallback: bool = Field(False, description="A provider missing here is a start-up error; true: log a "
                                    "warning and run on the providers that are there (CPU at least).")
    trt_cache_dir: Path | None = Field(None, description="TensorRT engine cache folder: the engine is built on the "
                                       "first start (minutes on a Jetson) and loaded on later ones.")
    trt_fp16: bool = Field(False, description="TensorRT in half precision (faster on Jetson/RTX; check the counts).")
    spin: bool = Field(True, description="onnxruntime threads busy-wait between runs (its default); false frees "
                       "the CPU for decoding and other roles on a busy device (see bench/multicam.py --no-spin).")
    threads: int = Field(2, ge=1, le=16, description="onnxruntime intra-op threads.")
    model: Path | None = Field(None, description="Model folder with manifest.json (default models/yolox_nano).")
    loop: bool = Field(False, description="Replay a video file or folder forever (demos).")
    snapshot_dir: Path | None = Field(
        None, description="Opt-in debug snapshots: an annotated JPEG per crossing, written here, never uploaded.")
    snapshot_keep: int = Field(100, ge=1, le=100_000, description="Snapshots kept; the oldest are deleted.")

    @model_validator(mode="after")
    def _jobs(self) -> VisionProducerConfig:
        if not (self.lines or self.zones or self.intrusion or self.density):
            raise ValueError(f"camera {self.name!r}: give lines, zones, intrusion or density zones")
        names = {ln.name for ln in self.lines}
        if self.carpark and self.carpark.line not in names:
            raise ValueError(f"camera {self.name!r}: carpark.line {self.carpark.line!r} is not one of its lines "
                             f"{sorted(names)}")
        return self

    def class_ids(self) -> tuple[int, ...]:
        return tuple(sorted({COCO[o] for o in self.objects}))


SESSION_FIELDS = ("model", "providers", "threads", "provider_fallback", "trt_cache_dir", "trt_fp16", "spin")


def check_shared_detectors(cameras: list[VisionProducerConfig]) -> None:
    """Cameras naming one detector share one session, so they must agree on it. Raises ValueError naming both."""
    first: dict[str, VisionProducerConfig] = {}
    for cam in cameras:
        other = first.setdefault(cam.detector, cam)
        differ = [f for f in SESSION_FIELDS if getattr(cam, f) != getattr(other, f)]
        if differ:
            raise ValueError(f"cameras {other.name!r} and {cam.name!r} share detector {cam.detector!r} but set "
                             f"different {', '.join(differ)}: give one of them another detector name")
