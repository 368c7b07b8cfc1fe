"""Config of the smart-toilet role: pydantic only (pymodbus loads when the role runs)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from edge_agent.config.models import IDENT, Base, DisplayConfig, RoleConfig


class ToiletSensorConfig(Base):
    name: str = Field(pattern=IDENT, description="Sensor name in records.")
    profile: str = Field(description="Register map: a built-in profile (edge_agent/toilet/profiles.toml) or one "
                         "added under `profiles`.")
    address: int | None = Field(None, ge=1, le=247, description="Modbus address (default: the profile's).")


class ToiletInput(Base):
    sensor: str = Field(description="Sensor that carries the input.")
    point: str = Field(description="Register (point) name in that sensor's profile.")
    invert: bool = Field(False, description="Active-low contact.")


class ToiletLimits(Base):
    nh3_mg_m3: float = Field(1.0, gt=0, description="NH3 limit (GB/T 17217-2021, class II, as read; see rules.py).")
    h2s_mg_m3: float = Field(0.01, gt=0, description="H2S limit (GB/T 17217-2021, class II, as read).")
    stall_max_s: float = Field(1200, gt=0, description="A stall occupied longer than this raises an alert.")
    debounce_s: float = Field(60, ge=0, description="Odour must stay over the limit this long.")


class ToiletRoleConfig(RoleConfig):
    """Smart toilet: Modbus RTU sensors on one RS-485 bus, stall/leak/consumable inputs, hygiene alerts."""

    type: Literal["toilet"] = Field(description="Producer plugin name.")
    name: str = Field("toilet", pattern=IDENT, description="Worker name.")
    port: str | None = Field(None, description="RS-485 adapter port (path or pyserial URL), for wired sensors.")
    baud: int | None = Field(None, description="Bus baud rate (default: the first sensor profile's).")
    parity: Literal["N", "E", "O"] | None = Field(None, description="Bus parity (default: the first profile's).")
    echo: bool = Field(False, description="The adapter echoes what it sends (2-wire without echo suppression).")
    timeout_s: float = Field(0.3, gt=0, description="Answer timeout per request.")
    retries: int = Field(1, ge=0, le=5, description="Retries per request.")
    fail_after: int = Field(3, ge=1, description="Failed polls in a row before a sensor is reported unavailable.")
    poll_s: float = Field(2, gt=0, description="Polling period.")
    air_interval_s: float = Field(60, gt=0, description="Period of the air and flow measurements.")
    sensors: list[ToiletSensorConfig] = Field(default_factory=list, description="Sensors on the bus.")
    nodes: list[str] = Field(default_factory=list, description="Wireless sensor nodes (firmware/, read by a "
                             "`nodes` producer) of this block: their stalls count as '<node>:<n>', their air "
                             "readings join the wired ones (the worst value of each gas counts).")
    node_stale_s: float = Field(300, gt=0, description="A node's air reading older than this is ignored.")
    stalls: dict[str, ToiletInput] = Field(default_factory=dict, description="Stall → door/IR input (1 = occupied).")
    leaks: dict[str, ToiletInput] = Field(default_factory=dict, description="Leak sensors (1 = wet).")
    consumables: dict[str, ToiletInput] = Field(default_factory=dict, description="Low-level switches (1 = low).")
    flow: ToiletInput | None = Field(None, description="Visitor counter register (running total).")
    limits: ToiletLimits = Field(ToiletLimits(), description="Alert thresholds.")
    profiles: dict[str, dict[str, Any]] = Field(default_factory=dict, description="Extra register maps.")
    staff_reader: str | None = Field(None, description="Serial tag reader sending STAFF:<id> lines.")
    display: DisplayConfig | None = Field(None, description="Free-stall display.")

    @model_validator(mode="after")
    def _sources(self) -> ToiletRoleConfig:
        if not self.sensors and not self.nodes:
            raise ValueError("a toilet needs wired sensors (port + sensors) or wireless nodes (nodes)")
        if self.sensors and not self.port:
            raise ValueError("wired sensors need the RS-485 port")
        return self
