"""`venue-provision device selftest`: is this device ready for the field? A pass/fail table, also sent to the hub.

Checks: disk free and fsync latency, clock, outbox integrity, the broker over mutual TLS (all from
`edge-agent doctor`), the device certificate (valid, not near expiry, fits the key), every camera in the
config yields a frame, every serial device answers (turnstile STATUS, ID-reader FIND, display ack,
Modbus sensors; push-only scanners and tag readers: the port opens), and every model's sha256 matches its
manifest. A check that cannot run (a missing extra, an absent port) is a FAIL that says why, never a crash.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

from edge_agent.gate.config import GateRoleConfig
from edge_agent.registry import AgentConfig
from edge_agent.toilet.config import ToiletRoleConfig
from edge_agent.vision.config import VisionProducerConfig

PASS, WARN, FAIL = "PASS", "WARN", "FAIL"
CERT_WARN_DAYS = 30


@dataclass(frozen=True)
class Check:
    name: str
    status: str
    detail: str


def _guard(name: str, fn: Callable[[], tuple[str, str]]) -> Check:
    try:
        status, detail = fn()
    except Exception as err:  # a check that cannot run is a failed check, never a crashed self-test
        status, detail = FAIL, f"{type(err).__name__}: {err}"
    return Check(name, status, detail)


def run_selftest(cfg: AgentConfig, models: Path | None = None, timeout_s: float = 3.0) -> list[Check]:
    from edge_agent.doctor import run_doctor

    rows = [Check(n, {"OK": PASS}.get(s, s), d) for n, s, d in run_doctor(cfg)]
    if cfg.mqtt.tls and cfg.mqtt.tls.cert:
        rows = [Check("broker (mutual TLS)", r.status, r.detail) if r.name == "broker" else r for r in rows]
        tls = cfg.mqtt.tls
        assert tls.key is not None
        rows.append(_guard("certificate", partial(certificate, Path(str(tls.cert)), Path(str(tls.key)))))
    for name, spec in cameras(cfg):
        rows.append(_guard(f"camera {name}", partial(camera, spec, timeout_s)))
    for name, probe in serial_probes(cfg, timeout_s):
        rows.append(_guard(name, probe))
    for manifest in sorted((models or default_models()).glob("*/manifest.json")):
        rows.append(_guard(f"model {manifest.parent.name}", partial(model_checksum, manifest)))
    return rows


def certificate(cert: Path, key: Path, now: float | None = None) -> tuple[str, str]:
    from provisioning import pki

    leaf = pki.load_certs(cert.read_bytes())[0]
    if pki.key_id(pki.check_public_key(leaf.public_key())) != pki.key_id(pki.load_key(key.read_bytes()).public_key()):
        return FAIL, "the certificate does not fit the device key: provision again"
    left = (leaf.not_valid_after_utc.timestamp() - (now or time.time())) / 86400
    if left <= 0 or leaf.not_valid_before_utc.timestamp() > (now or time.time()):
        return FAIL, f"not valid now (until {leaf.not_valid_after_utc:%Y-%m-%d}): check the clock, or provision again"
    who = pki.common_name(leaf.subject)
    return (WARN if left < CERT_WARN_DAYS else PASS), f"{who}, serial {leaf.serial_number:x}, {left:.0f} days left"


def cameras(cfg: AgentConfig) -> Iterator[tuple[str, str]]:
    for p in cfg.producers:
        if isinstance(p, VisionProducerConfig):
            yield p.name, p.source
        elif isinstance(p, GateRoleConfig):
            yield from ((f"{p.name}/{lane.name} QR", lane.camera_qr) for lane in p.lanes if lane.camera_qr)


def camera(spec: str, timeout_s: float) -> tuple[str, str]:
    try:
        from edge_agent.vision.sources import open_source
    except ImportError as err:
        return FAIL, f"vision extra not installed ({err.name}): pip install 'smart-venue-edge[vision]'"
    t = time.monotonic()
    frames = open_source(spec)
    try:
        frame = next(iter(frames), None)
    finally:
        close = getattr(frames, "close", None)
        if close:
            close()
    if frame is None:
        return FAIL, f"{spec}: opened but gave no frame"
    h, w = frame.image.shape[:2]
    took = time.monotonic() - t
    return (PASS if took <= timeout_s else WARN), f"{spec}: {w}x{h} frame in {took:.1f} s"


def serial_probes(cfg: AgentConfig, timeout_s: float) -> Iterator[tuple[str, Callable[[], tuple[str, str]]]]:
    from provisioning import probes

    for p in cfg.producers:
        if isinstance(p, GateRoleConfig):
            for lane in p.lanes:
                where = f"{p.name}/{lane.name}"
                if lane.turnstile:
                    yield f"turnstile {where}", partial(probes.turnstile, lane.turnstile, lane.turnstile_baud,
                                                        lane.turnstile_addr, timeout_s)
                if lane.idreader:
                    yield f"ID reader {where}", partial(probes.idreader, lane.idreader, lane.idreader_baud, timeout_s)
                if lane.scanner:
                    yield f"scanner {where}", partial(probes.opens, lane.scanner, lane.scanner_baud)
        elif isinstance(p, ToiletRoleConfig):
            if p.port and p.sensors:
                yield f"Modbus bus {p.name}", partial(probes.modbus, p)
            if p.staff_reader:
                yield f"tag reader {p.name}", partial(probes.opens, p.staff_reader, 9600)
        d = getattr(p, "display", None)
        if d is not None:
            yield f"display {p.name}", partial(probes.display, d.port, d.baud, d.ack, timeout_s)


def default_models() -> Path:
    """models/ next to the package (a source checkout), as the detector finds its default model."""
    return Path(__file__).resolve().parents[1] / "models"


def _manifest_files(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The {file, sha256} entries of a manifest: the model itself, or each part of a multi-model one (face)."""
    if "file" in doc:
        return [doc]
    return [v for v in doc.values() if isinstance(v, dict) and "file" in v and "sha256" in v]


def model_checksum(manifest: Path) -> tuple[str, str]:
    entries = _manifest_files(json.loads(manifest.read_text()))
    if not entries:
        return FAIL, f"{manifest}: names no model file with a sha256"
    names = []
    for entry in entries:
        path = manifest.parent / entry["file"]
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        if h.hexdigest() != entry["sha256"]:
            return FAIL, (f"{path.name}: sha256 {h.hexdigest()[:16]}… but the manifest says "
                          f"{entry['sha256'][:16]}…")
        names.append(path.name)
    return PASS, f"{', '.join(names)}: sha256 matches the manifest"


def table(rows: list[Check]) -> str:
    width = max([len(r.name) for r in rows] + [5])
    lines = [f"{'check':<{width}}  result  detail", f"{'-' * width}  ------  ------"]
    lines += [f"{r.name:<{width}}  {r.status:<6}  {r.detail}" for r in rows]
    failed = sum(r.status == FAIL for r in rows)
    lines.append(f"{len(rows)} checks: {'all passed' if not failed else f'{failed} FAILED'}"
                 f"{'' if not any(r.status == WARN for r in rows) else ' (with warnings)'}")
    return "\n".join(lines)


def passed(rows: list[Check]) -> bool:
    return not any(r.status == FAIL for r in rows)


def report_body(rows: list[Check]) -> dict[str, Any]:
    return {"checks": [asdict(r) for r in rows], "at": time.time()}
