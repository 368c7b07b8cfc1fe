"""Config of the ticket-gate role: pydantic only (no cryptography, serial or cv2 here)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from edge_agent.config.models import IDENT, Base, DisplayConfig, RoleConfig, key_bytes

MIN_KEY_BYTES = 16


def public_key_bytes(text: str) -> bytes:
    """The raw 32 bytes of an Ed25519 public key given as base64 (standard or url-safe) or hex."""
    return key_bytes(text, "public_key (an Ed25519 key)")


class ContactConfig(Base):
    """A turnstile with only a relay input and a pass-sensor contact (GPIO: 'gpiochip0:17')."""

    relay: str = Field(description="Output line that releases the turnstile (pulsed once per person).")
    sensor: str = Field(description="Input line that closes once per person walking through.")
    sensor_active_low: bool = Field(True, description="The sensor pulls the line to ground (with pull-up).")
    relay_active_low: bool = Field(False, description="The relay board switches on a low level.")
    pulse_s: float = Field(0.2, gt=0, le=5, description="Relay pulse length.")
    debounce_ms: int = Field(20, ge=0, le=1000, description="Sensor debounce (kernel-side where supported).")


class GateLaneConfig(Base):
    """One lane: its readers and its turnstile. Ports are device paths or pyserial URLs (loop://, rfc2217://)."""

    name: str = Field(pattern=IDENT, description="Lane name in records.")
    scanner: str | None = Field(None, description="Serial QR/barcode scanner port.")
    scanner_baud: int = Field(9600, description="Scanner baud rate.")
    idreader: str | None = Field(None, description="2nd-generation ID card reader port (real-name tickets).")
    idreader_baud: int = Field(115200, description="ID reader baud rate.")
    camera_qr: str | None = Field(None, description="Camera (index, URL or file) whose frames are decoded as QR.")
    turnstile: str | None = Field(None, description="Turnstile controller port (RS-485).")
    turnstile_baud: int = Field(9600, description="Turnstile baud rate.")
    turnstile_addr: int = Field(1, ge=0, le=255, description="Controller address on the RS-485 bus.")
    contact: ContactConfig | None = Field(None, description="Dry-contact turnstile instead of an RS-485 one.")

    @model_validator(mode="after")
    def _one_turnstile(self) -> GateLaneConfig:
        if self.turnstile and self.contact:
            raise ValueError("a lane has either an RS-485 turnstile or a dry-contact one, not both")
        return self


class GateRoleConfig(RoleConfig):
    """Ticket gates of one site: offline validation, turnstiles, capacity, occupancy display."""

    type: Literal["gate"] = Field(description="Producer plugin name.")
    name: str = Field("gate", pattern=IDENT, description="Worker name.")
    venue: str = Field(min_length=1, description="Venue id the tickets must carry.")
    public_key: str = Field(description="Ticket-signing Ed25519 public key (raw 32 bytes, base64 or hex).")
    capacity: int = Field(gt=0, description="Site capacity: entry is refused at this occupancy.")
    thresholds: list[float] = Field([0.8, 0.9, 1.0], description="Occupancy ratios that raise alerts.")
    grace_min: int = Field(15, ge=0, le=240, description="Minutes of slack around a reservation time slot.")
    timezone: str = Field("Asia/Shanghai", description="Venue time zone (dates and slots are local).")
    state_dir: Path = Field(Path("/var/lib/edge-agent/gate"), description="Used tickets, occupancy, allow-list.")
    allowlist_key_env: str | None = Field(None, description="Environment variable holding the site's secret "
                                          "for hashing ID numbers (the same key the hub hashes allow-lists with).")
    allowlist_key_file: Path | None = Field(None, description="File (0600) holding that secret, as written by "
                                            "provisioning; one of allowlist_key_env / allowlist_key_file is needed.")
    idreader_poll_s: float = Field(0.3, gt=0, description="ID reader polling period.")
    pass_timeout_s: float = Field(10, gt=0, description="Opened but nobody passed: release the ticket after this.")
    lanes: list[GateLaneConfig] = Field(min_length=1, description="Gate lanes.")
    display: DisplayConfig | None = Field(None, description="Occupancy display.")
    vision_lines: list[str] = Field(
        default_factory=list,
        description="Camera-counted doors without turnstiles (free exits, group entrances) as "
                    "'<vision producer name>/<line name>': a crossing in adds one to the site occupancy, out "
                    "removes one. Lines that watch a turnstile lane must not be listed (counted twice).")

    @field_validator("vision_lines")
    @classmethod
    def _lines(cls, v: list[str]) -> list[str]:
        for item in v:
            cam, _, line = item.partition("/")
            if not cam or not line or "/" in line:
                raise ValueError(f"vision_lines entries are '<vision producer>/<line>', got {item!r}")
        return v

    @model_validator(mode="after")
    def _one_key_source(self) -> GateRoleConfig:
        if (self.allowlist_key_env is None) == (self.allowlist_key_file is None):
            raise ValueError(f"gate {self.name}: give exactly one of allowlist_key_env or allowlist_key_file "
                             "(the allow-list secret never lives in the config file)")
        return self

    def allowlist_key(self) -> bytes:
        """The site's allow-list secret; ValueError when missing or too short to be random (< 16 bytes)."""
        if self.allowlist_key_env:
            value = os.environ.get(self.allowlist_key_env, "").strip().encode()
            where = f"environment variable {self.allowlist_key_env}"
        else:
            assert self.allowlist_key_file is not None
            value = self.allowlist_key_file.read_bytes().strip()
            where = str(self.allowlist_key_file)
        if len(value) < MIN_KEY_BYTES:
            raise ValueError(f"gate {self.name}: allow-list key from {where} is missing or shorter than "
                             f"{MIN_KEY_BYTES} bytes (provisioning writes a random one)")
        return value

    @field_validator("public_key")
    @classmethod
    def _key(cls, v: str) -> str:
        public_key_bytes(v)
        return v
