"""Agent configuration: pydantic v2 models, every key documented, unknown keys rejected."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from edge_agent.kiosk.config import KioskConfig

IDENT = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


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


class MetricsConfig(Base):
    enabled: bool = Field(False, description="Serve Prometheus metrics over HTTP.")
    host: str = Field("127.0.0.1", description="Metrics listen address.")
    port: int = Field(9108, ge=0, le=65535, description="Metrics port (0 = any free port).")


class SyntheticProducerConfig(Base):
    """Emits a scenic-spot gate's traffic: passes, per-interval counts and occupancy."""

    type: Literal["synthetic"] = Field(description="Producer plugin name.")
    name: str = Field("synthetic", pattern=IDENT, description="Worker name in logs and metrics.")
    rate_per_s: float = Field(5, gt=0, le=100_000, description="Gate passes per second.")
    count_interval_s: float = Field(60, gt=0, description="Period of the per-interval count measurement.")
    limit: int | None = Field(None, ge=0, description="Stop after this many passes (None = forever).")
    journal: Path | None = Field(None, description="Append the id of every pass confirmed durable "
                                 "(fault tests compare it with the hub).")
    seed: int | None = Field(None, description="Random seed for reproducible runs.")


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


class VisionProducerConfig(Base):
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


class DisplayConfig(Base):
    port: str = Field(description="LED/LCD board port.")
    baud: int = Field(9600, description="Baud rate.")
    encoding: str = Field("gb2312", description="Text encoding the board expects.")
    ack: bool = Field(True, description="The board acknowledges frames ($A/$N); false for write-only boards.")


class GateRoleConfig(Base):
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
    allowlist_key: str | None = Field(None, description="Secret for hashing ID numbers in the allow-list.")
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

    @field_validator("public_key")
    @classmethod
    def _key(cls, v: str) -> str:
        from edge_agent.gate.role import load_public_key

        load_public_key(v)
        return v


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


class ToiletRoleConfig(Base):
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


class NodesConfig(Base):
    """MicroPython sensor nodes (firmware/) publishing to the gateway's local broker: their readings are
    stored once each (by the node's own numbering) and confirmed back to the node."""

    type: Literal["nodes"] = Field(description="Producer plugin name.")
    name: str = Field("nodes", pattern=IDENT, description="Worker name.")
    host: str = Field("127.0.0.1", description="The local broker the nodes publish to.")
    port: int = Field(1883, ge=1, le=65535, description="Its port.")
    prefix: str = Field("svnode", pattern=IDENT, description="Topic prefix the nodes use.")
    username: str | None = Field(None, description="Local broker user.")
    password: str | None = Field(None, description="Local broker password.")
    classes: dict[str, Literal["transaction", "measurement"]] = Field(
        {"air": "measurement", "stall": "transaction"},
        description="Node record kind → outbox class (unlisted kinds are measurements).")
    config_timeout_s: float = Field(10, gt=0, description="How long node.config waits for the node's answer.")


ProducerConfig = Annotated[SyntheticProducerConfig | VisionProducerConfig | GateRoleConfig | ToiletRoleConfig
                           | NodesConfig | KioskConfig, Field(discriminator="type")]


class AgentConfig(Base):
    device: DeviceConfig = Field(description="Who this device is.")
    store: StoreConfig = Field(StoreConfig(), description="The outbox.")
    mqtt: MqttConfig = Field(MqttConfig(), description="The broker connection.")
    sync: SyncConfig = Field(SyncConfig(), description="Batching, acks and pacing.")
    metrics: MetricsConfig = Field(MetricsConfig(), description="Prometheus endpoint.")
    producers: list[ProducerConfig] = Field(default_factory=list, description="Sources of records.")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Log level.")

    @model_validator(mode="after")
    def _unique_producers(self) -> AgentConfig:
        names = [p.name for p in self.producers]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"producer names must be unique; repeated: {sorted(dup)}")
        return self
