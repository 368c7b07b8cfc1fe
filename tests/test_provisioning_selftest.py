"""`device selftest` against simulated devices on ptys (the real wire protocols), a real video file and
the shipped model: what answers passes, what is silent or tampered with fails, and nothing crashes."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edge_agent.registry import AgentConfig
from edge_agent.sim.display import DisplaySim
from edge_agent.sim.idreader import IdReaderSim
from edge_agent.sim.pty import PtyPair
from edge_agent.sim.turnstile import TurnstileSim
from provisioning import pki
from provisioning.ca import CertificateAuthority
from provisioning.selftest import (
    FAIL,
    PASS,
    WARN,
    Check,
    certificate,
    model_checksum,
    passed,
    report_body,
    run_selftest,
    table,
)

ROOT = Path(__file__).resolve().parents[1]
VIDEO = ROOT / "tests" / "fixtures" / "pets09_s2l1_view1_480x360.avi"


@pytest.fixture
def devices() -> Iterator[dict[str, Any]]:
    made: dict[str, Any] = {"turnstile": TurnstileSim(addr=3), "idreader": IdReaderSim(), "display": DisplaySim(),
                            "silent": PtyPair()}
    yield made
    for d in made.values():
        d.close()


def gate_config(tmp_path: Path, devices: dict[str, Any], turnstile: str, camera: str) -> AgentConfig:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    public = Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()
    return AgentConfig.model_validate({
        "device": {"id": "gate-01", "site": "westlake", "role": "gate"},
        "store": {"path": str(tmp_path / "var" / "outbox.db")},
        "mqtt": {"url": "mqtt://127.0.0.1:1"},  # nothing listens: the broker check must fail, not hang
        "producers": [{"type": "gate", "venue": "westlake", "public_key": public, "capacity": 100,
                       "allowlist_key_env": "SVE_TEST_ALLOWLIST_KEY", "state_dir": str(tmp_path / "gate"),
                       "lanes": [{"name": "l1", "turnstile": turnstile, "turnstile_addr": 3,
                                  "idreader": devices["idreader"].path, "scanner": devices["silent"].path,
                                  "camera_qr": camera}],
                       "display": {"port": devices["display"].path}}]})


def by_name(rows: list[Any]) -> dict[str, Any]:
    return {r.name: r for r in rows}


def test_answering_devices_pass_and_silent_ones_fail(tmp_path: Path, devices: dict[str, Any]) -> None:
    models = tmp_path / "models"
    shutil.copytree(ROOT / "models" / "yolox_nano", models / "yolox_nano")
    good = by_name(run_selftest(gate_config(tmp_path, devices, devices["turnstile"].path, str(VIDEO)), models, 2.0))
    assert good["turnstile gate/l1"].status == PASS and "state 0, alarm 0" in good["turnstile gate/l1"].detail
    assert good["ID reader gate/l1"].status == PASS and "no card" in good["ID reader gate/l1"].detail
    assert good["display gate"].status == PASS and devices["display"].frames == 1
    assert good["scanner gate/l1"].status == PASS
    assert good["camera gate/l1 QR"].status == PASS and "480x360" in good["camera gate/l1 QR"].detail
    assert good["model yolox_nano"].status == PASS
    assert good["broker"].status == FAIL and good["clock"].status == PASS and good["disk free"].status in (PASS, WARN)

    # The turnstile port is a silent line, the camera file is gone, the model was swapped on disk.
    (models / "yolox_nano" / "yolox_nano.onnx").write_bytes(b"not the model")
    bad_rows = run_selftest(gate_config(tmp_path, devices, devices["silent"].path, str(tmp_path / "gone.avi")),
                            models, 0.5)
    bad = by_name(bad_rows)
    assert bad["turnstile gate/l1"].status == FAIL and "no STATUS_REPORT" in bad["turnstile gate/l1"].detail
    assert bad["camera gate/l1 QR"].status == FAIL and "gone.avi" in bad["camera gate/l1 QR"].detail
    assert bad["model yolox_nano"].status == FAIL and "manifest says" in bad["model yolox_nano"].detail
    assert not passed(bad_rows)
    text = table(bad_rows)
    assert "FAILED" in text and text.splitlines()[0].startswith("check")


def test_every_file_of_a_multi_model_manifest_is_checked(tmp_path: Path) -> None:
    """The face check ships two models under one manifest (detector + recogniser): both are verified."""
    face = tmp_path / "face"
    shutil.copytree(ROOT / "models" / "face", face)
    status, detail = model_checksum(face / "manifest.json")
    assert status == PASS and "yunet" in detail and "sface" in detail
    (face / "face_recognition_sface_2021dec_int8bq.onnx").write_bytes(b"swapped")
    status, detail = model_checksum(face / "manifest.json")
    assert status == FAIL and "sface" in detail and "manifest says" in detail


def test_certificate_check(tmp_path: Path) -> None:
    ca = CertificateAuthority.init(tmp_path / "ca", "CA")
    key = pki.new_key()
    cert = ca.issue_device(key.public_key(), "gate-01", "westlake", days=10)
    pki.write_secret(tmp_path / "d.pem", ca.chain_for(cert))
    pki.write_secret(tmp_path / "d.key", pki.key_pem(key))
    pki.write_secret(tmp_path / "other.key", pki.key_pem(pki.new_key()))
    status, detail = certificate(tmp_path / "d.pem", tmp_path / "d.key")
    assert status == WARN and "gate-01" in detail  # 10 days left: renew soon
    assert certificate(tmp_path / "d.pem", tmp_path / "other.key")[0] == FAIL
    expired_at = cert.not_valid_after_utc.timestamp() + 1
    assert certificate(tmp_path / "d.pem", tmp_path / "d.key", now=expired_at)[0] == FAIL
    assert json.loads(json.dumps(report_body([Check("x", PASS, "y")])))["checks"][0]["status"] == PASS
    ca.close()
