"""Shared configuration sections: pydantic v2 models, every key documented, unknown keys rejected.

The agent's whole config (AgentConfig) is assembled in edge_agent/registry.py from these sections and each
role's own model, which lives beside the role (edge_agent/<role>/config.py) and subclasses RoleConfig.
"""

from __future__ import annotations

import base64
import binascii
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

IDENT = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


def key_bytes(text: str, what: str = "key") -> bytes:
    """The raw 32 bytes of a key given as base64 (standard or url-safe, padding optional) or hex; ValueError
    naming `what` otherwise."""
    t = text.strip()
    try:
        raw = bytes.fromhex(t) if len(t) == 64 else base64.b64decode(t + "=" * (-len(t) % 4), altchars=b"-_")
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise ValueError(f"{what} must be a raw 32-byte key in base64 or hex")
    return raw


class Base(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DeviceConfig(Base):
    id: str = Field(pattern=IDENT, description="Device identifier, unique in the city (topic segment).")
    site: str = Field(pattern=IDENT, description="Venue/site identifier (topic segment).")
    role: Literal["gate", "toilet", "kiosk", "gateway"] = Field(
        "gateway", description="What this device does; sent in the birth message.")
    metadata: dict[str, str] = Field(default_factory=dict,
                                     description="Free-form facts sent in the birth message (model, location).")


class StoreConfig(Base):
    path: Path = Field(Path("var/outbox.db"), description="SQLite outbox file (WAL mode).")
    budget_mb: float = Field(256, gt=0, description="Byte budget of queued records; over it the oldest "
                             "measurements (then states) are dropped and counted. Transactions are never dropped.")
    hard_cap_mb: float | None = Field(None, gt=0, description="Hard size limit of the database file "
                                      "(SQLite max_page_count); unset = limited by the disk.")
    measurement_ttl_s: float | None = Field(7 * 86400, gt=0,
                                            description="Measurements older than this are dropped (counted).")
    state_ttl_s: float | None = Field(7 * 86400, gt=0, description="States older than this are dropped.")
    maintenance_interval_s: float = Field(30, gt=0, description="How often TTL expiry runs.")


class TlsConfig(Base):
    ca: Path | None = Field(None, description="CA bundle that signs the broker certificate.")
    cert: Path | None = Field(None, description="Client certificate (mutual TLS).")
    key: Path | None = Field(None, description="Client private key (mutual TLS).")

    @model_validator(mode="after")
    def _pair(self) -> TlsConfig:
        if (self.cert is None) != (self.key is None):
            raise ValueError("tls.cert and tls.key must be given together")
        return self


class MqttConfig(Base):
    url: str = Field("mqtt://127.0.0.1:1883", description="Broker URL, mqtt://host:port or mqtts://host:port.")
    protocol: Literal["5", "3.1.1"] = Field("5", description="MQTT version; 5 falls back to 3.1.1 "
                                            "when the broker refuses v5.")
    client_id: str | None = Field(None, description="MQTT client id; defaults to the device id.")
    username: str | None = Field(None, description="Broker user name.")
    password_env: str | None = Field(None, description="Name of the environment variable that holds the "
                                     "broker password (secrets never live in the config file).")
    password_file: Path | None = Field(None, description="File whose first line is the broker password "
                                       "(e.g. a systemd credential or a 0600 file); instead of password_env.")
    keepalive_s: int = Field(30, ge=5, le=3600, description="MQTT keepalive.")
    topic_prefix: str = Field("venue/v1", description="Topic prefix (protocol version included).")
    tls: TlsConfig | None = Field(None, description="TLS settings; required for mqtts://.")

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        parts = urlsplit(v)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise ValueError("url must look like mqtt://host:port or mqtts://host:port")
        if parts.port is not None and not 0 < parts.port < 65536:
            raise ValueError("port out of range")
        return v

    @model_validator(mode="after")
    def _one_secret(self) -> MqttConfig:
        if self.password_env and self.password_file:
            raise ValueError("give mqtt.password_env or mqtt.password_file, not both")
        return self

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or "127.0.0.1"

    @property
    def port(self) -> int:
        parts = urlsplit(self.url)
        return parts.port or (8883 if parts.scheme == "mqtts" else 1883)

    @property
    def secure(self) -> bool:
        return urlsplit(self.url).scheme == "mqtts"


class SyncConfig(Base):
    batch_max_records: int = Field(5000, ge=1, le=100_000, description="Records per uplink message.")
    batch_max_kb: int = Field(1024, ge=1, le=16_384, description="Uncompressed size cap per uplink message.")
    compression: Literal["zstd", "gzip", "none"] = Field("zstd", description="Payload compression.")
    window: int = Field(8, ge=1, le=256, description="Unacknowledged batches in flight at once.")
    ack_timeout_s: float = Field(15, gt=0, description="Re-send a batch the hub has not acked after this.")
    backlog_rate: float = Field(20_000, ge=0, description="Backlog drain pace in records/s after a "
                                "reconnect (0 = unlimited); live records are never paced.")
    backoff_min_s: float = Field(1, gt=0, description="First reconnect delay.")
    backoff_max_s: float = Field(60, gt=0, description="Longest reconnect delay (jittered).")

    @model_validator(mode="after")
    def _order(self) -> SyncConfig:
        if self.backoff_min_s > self.backoff_max_s:
            raise ValueError("backoff_min_s must not exceed backoff_max_s")
        return self


class CommandsConfig(Base):
    """Downlink commands: only those the hub signed for this device run (edge_agent/core/signed.py)."""

    hub_key: str | None = Field(None, description="The hub's Ed25519 command-signing public key (raw 32 bytes, "
                                "base64), written by provisioning. Unset: every downlink command is refused.")
    revert_after_failed_starts: int = Field(3, ge=1, le=100, description="A remote config after which the agent "
                                            "failed to start this many times in a row is set aside (crash-loop "
                                            "revert to the technician's file).")
    healthy_after_s: float = Field(30, gt=0, description="Running this long counts as a good start.")

    @field_validator("hub_key")
    @classmethod
    def _key(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                raw = base64.b64decode(v.strip(), validate=True)
            except (binascii.Error, ValueError):
                raw = b""
            if len(raw) != 32:
                raise ValueError("hub_key must be a raw 32-byte Ed25519 public key in base64")
        return v


class MetricsConfig(Base):
    enabled: bool = Field(False, description="Serve Prometheus metrics over HTTP.")
    host: str = Field("127.0.0.1", description="Metrics listen address.")
    port: int = Field(9108, ge=0, le=65535, description="Metrics port (0 = any free port).")


class DisplayConfig(Base):
    """An LED/LCD board on a serial port (gates show occupancy, toilets free stalls)."""

    port: str = Field(description="LED/LCD board port.")
    baud: int = Field(9600, description="Baud rate.")
    encoding: str = Field("gb2312", description="Text encoding the board expects.")
    ack: bool = Field(True, description="The board acknowledges frames ($A/$N); false for write-only boards.")


class RoleConfig(Base):
    """Base of every role's config model: `type` picks the role in the registry, `name` its worker."""

    type: str = Field(description="Role (producer plugin) name, as registered in edge_agent/registry.py.")
    name: str = Field(pattern=IDENT, description="Worker name in logs, metrics and records.")
