"""The kiosk role's configuration (`[[producers]] type = "kiosk"`): pydantic only, every field described.

Secrets never live here: the ID-number key comes from `key_file` (mode 0600) or the OS keyring, the
payment API key from the environment variable named by `payment.api_key_env`. `hub_public_key` is the
hub's X25519 public key that ID numbers are sealed to in registration records (public, not a secret).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from edge_agent.config.models import IDENT, Base, RoleConfig, key_bytes


class PmsConfig(Base):
    kind: Literal["sqlite"] = Field("sqlite", description="Property-management system: 'sqlite' is the local "
                                    "PMS for small hotels (bookings, rooms, stays, charges in one file).")
    path: Path = Field(Path("/var/lib/edge-agent/kiosk/pms.db"), description="The local PMS database.")


class DispenserConfig(Base):
    """A CRT-591-family key-card dispenser/encoder (Creator CRT-591, QUIO QU-TK-F3x) on RS-232."""

    port: str = Field(description="Serial port (device path or pyserial URL).")
    baud: int = Field(9600, description="Baud rate (the unit adapts to 9600-57600).")
    address: int = Field(0, ge=0, le=15, description="Unit address on the daisy chain (0-15).")
    sector: int = Field(1, ge=1, le=15, description="Mifare sector that holds the room grant.")
    mifare_key_env: str | None = Field(None, description="Environment variable with the sector's key A "
                                       "(12 hex digits); unset = the factory key FFFFFFFFFFFF.")


class PrinterConfig(Base):
    """An ESC/POS receipt printer through python-escpos."""

    kind: Literal["serial", "network", "usb", "none"] = Field(description="How the printer is attached; "
                                                              "'none' = no printer (receipts are skipped).")
    port: str | None = Field(None, description="Serial port (kind = serial).")
    baud: int = Field(9600, description="Serial baud rate.")
    host: str | None = Field(None, description="Printer address (kind = network).")
    tcp_port: int = Field(9100, ge=1, le=65535, description="Printer TCP port (kind = network).")
    usb_vendor: int | None = Field(None, description="USB vendor id (kind = usb).")
    usb_product: int | None = Field(None, description="USB product id (kind = usb).")
    width: int = Field(32, ge=24, le=64, description="Characters per line (58 mm paper: 32, 80 mm: 48).")

    @model_validator(mode="after")
    def _target(self) -> PrinterConfig:
        need = {"serial": self.port, "network": self.host, "usb": self.usb_vendor and self.usb_product}
        if self.kind in need and not need[self.kind]:
            raise ValueError(f"a {self.kind} printer needs " + {"serial": "port", "network": "host",
                                                                 "usb": "usb_vendor and usb_product"}[self.kind])
        return self


class PaymentConfig(Base):
    """The deposit: pre-authorised at check-in, captured or released at check-out."""

    url: str = Field(description="Payment provider API base URL (the sandbox: http://127.0.0.1:PORT).")
    api_key_env: str | None = Field(None, description="Environment variable holding the API key.")
    timeout_s: float = Field(15, gt=0, le=120, description="An answer later than this counts as unknown: "
                             "the pre-authorisation is voided and the guest told so.")
    currency: str = Field("CNY", pattern=r"^[A-Z]{3}$", description="ISO 4217 currency.")
    deposit_cents: int = Field(30000, ge=0, description="Deposit per stay in cents (0 = none).")


class FaceConfig(Base):
    model_dir: Path | None = Field(None, description="Folder with manifest.json, YuNet and SFace (default "
                                   "models/face).")
    threshold: float = Field(0.363, gt=0, lt=1, description="SFace cosine score at or above which the live "
                             "face matches the ID photo (see docs/kiosk.md for the measurement).")
    max_tries: int = Field(3, ge=1, le=10, description="Face checks before staff verification.")
    frames: int = Field(8, ge=3, le=60, description="Camera frames per check (liveness looks across them).")
    turn: float = Field(0.12, gt=0, le=1, description="Liveness: change of (nose − eye midpoint) / eye distance "
                        "across the frames (the guest turns their head) that a flat photo cannot produce.")
    wlt_library: Path | None = Field(None, description="Vendor library that decodes the chip photo (WLT), "
                                     "loaded with ctypes; unset = only readers that deliver JPEG/BMP.")
    wlt_symbol: str = Field("unpack", description="Its entry point: int f(const char *wlt, char *bmp, int save).")


class KioskConfig(RoleConfig):
    """Hotel self-check-in kiosk: the touch UI's web server plus its devices; registrations to the hub."""

    type: Literal["kiosk"] = Field(description="Producer plugin name.")
    name: str = Field("kiosk", pattern=IDENT, description="Worker name.")
    hotel: str = Field(pattern=IDENT, description="Hotel code in records.")
    host: str = Field("127.0.0.1", description="Address the UI's web server listens on (loopback: the "
                      "kiosk's own browser).")
    port: int = Field(8080, ge=0, le=65535, description="Its port (0 = any free port).")
    timezone: str = Field("Asia/Shanghai", description="Hotel time zone (arrival dates are local).")
    idle_timeout_s: float = Field(90, ge=5, le=3600, description="Idle time after which a session is wiped "
                                  "and the welcome screen shown (a held deposit is released).")
    idreader: str = Field(description="2nd-generation ID card reader port.")
    idreader_baud: int = Field(115200, description="ID reader baud rate.")
    camera: str = Field("0", description="Camera index, rtsp:// or http:// URL, or video file.")
    dispenser: DispenserConfig = Field(description="Key-card dispenser/encoder.")
    printer: PrinterConfig = Field(PrinterConfig(kind="none"), description="Receipt printer.")
    payment: PaymentConfig = Field(description="Deposit provider.")
    pms: PmsConfig = Field(PmsConfig(), description="Property-management system.")
    face: FaceConfig = Field(FaceConfig(), description="ID photo vs live face check.")
    key_source: Literal["file", "keyring"] = Field("file", description="Where the ID-number key lives.")
    key_file: Path = Field(Path("/var/lib/edge-agent/kiosk/id.key"), description="32-byte key file, mode 0600 "
                           "(created on first start when missing).")
    hub_public_key: str = Field(description="Hub's X25519 public key (32 bytes, base64 or hex): ID numbers "
                                "in registration records are sealed to it.")
    state_dir: Path = Field(Path("/var/lib/edge-agent/kiosk"), description="Local guest records.")
    retention_days: float = Field(30, gt=0, le=3650, description="Local guest records older than this (after "
                                  "check-out) are deleted.")
    languages: tuple[Literal["zh-CN", "en"], ...] = Field(("zh-CN", "en"), min_length=1,
                                                          description="UI languages, the first is the default.")

    @field_validator("hub_public_key")
    @classmethod
    def _hub_key(cls, v: str) -> str:
        raw_key(v)
        return v


def raw_key(text: str) -> bytes:
    """A 32-byte key given as base64 (standard or url-safe) or hex; ValueError otherwise."""
    return key_bytes(text)
