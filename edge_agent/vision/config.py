"""Config of a people-counting camera: pydantic only (cv2/onnxruntime load when the camera runs)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from edge_agent.config.models import IDENT, Base, RoleConfig


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


Provider = Literal["CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider"]


class VisionProducerConfig(RoleConfig):
    """People counting on one camera: counts per interval, crossings, occupancy."""

    type: Literal["vision"] = Field(description="Producer plugin name.")
    name: str = Field("camera", pattern=IDENT, description="Camera name in records.")
    source: str = Field(description="Camera index, rtsp:// or http:// URL, video file or image folder.")
    lines: list[LineConfig] = Field(min_length=1, description="Counting lines.")
    zones: list[ZoneConfig] = Field(default_factory=list, description="Zones for occupancy and dwell time.")
    interval_s: float = Field(60, gt=0, description="Aggregation interval of the count measurement.")
    emit_crossings: bool = Field(True, description="Also emit each crossing as a record.")
    stride: int = Field(4, ge=1, le=30, description="Detect every n-th frame (motion gating).")
    every_frame: bool = Field(False, description="Disable gating: detect on every frame.")
    providers: tuple[Provider, ...] = Field(("CPUExecutionProvider",), min_length=1,
                                            description="onnxruntime providers, in order.")
    threads: int = Field(2, ge=1, le=16, description="onnxruntime intra-op threads.")
    model: Path | None = Field(None, description="Model folder with manifest.json (default models/yolox_nano).")
    loop: bool = Field(False, description="Replay a video file or folder forever (demos).")
    snapshot_dir: Path | None = Field(
        None, description="Opt-in debug snapshots: an annotated JPEG per crossing, written here, never uploaded.")
    snapshot_keep: int = Field(100, ge=1, le=100_000, description="Snapshots kept; the oldest are deleted.")
