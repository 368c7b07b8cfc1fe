"""Provisioning end to end on this machine: claim → certificate → agent connects and syncs → hub shows it
online; reused, expired and unknown tokens; the offline USB bundle; the registry's gate for the ingest.

Everything real: the generated TLS + ACL config in mosquitto, the claim service and a hub worker over mutual
TLS, `venue-provision` and `edge-agent` as the technician would run them (subprocesses, inputs scripted).
"""

from __future__ import annotations

import io
import json
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from hub.claims import ClaimService, Endpoint
from hub.commands import generate_key
from hub.db import SqliteBackend
from hub.ingest import HubWorker
from hub.registry import Registry, Signed
from provisioning import ClaimRefused, pki
from provisioning.ca import CertificateAuthority
from tests.helpers import PY, Proc, hub_records, wait_for
from tests.secure_broker import SecureBroker, identity

pytestmark = pytest.mark.broker

TEMPLATE = """log_level = "INFO"
[sync]
ack_timeout_s = 2
backoff_min_s = 0.2
backoff_max_s = 1
backlog_rate = 0
[[producers]]
type = "synthetic"
name = "north"
rate_per_s = 100
count_interval_s = 1
limit = 120
"""


@dataclass
class Hub:
    ca: CertificateAuthority
    site: CertificateAuthority
    broker: SecureBroker
    db: Path
    registry: Registry
    service: ClaimService
    dir: Path

    def provision(self, devdir: Path, *extra: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [PY, "-m", "provisioning.cli", "device", "provision", "--dir", str(devdir), "--ca",
             str(self.broker.files.ca), "--broker", self.broker.url("device"), *extra],
            capture_output=True, text=True, timeout=timeout)

    def claim_args(self, token: str) -> list[str]:
        return ["--claim", token, "--claim-url", self.broker.url("claim")]


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[Hub]:
    ca = CertificateAuthority.init(tmp_path / "ca", "Test City CA")
    site = CertificateAuthority.init(tmp_path / "laptop-ca", "Westlake site CA", parent=ca, site="westlake")
    broker = SecureBroker(tmp_path, ca, extra_crls=(site.dir / "crl.pem",))
    db = tmp_path / "hub.db"
    registry = Registry(str(db))
    cert, key = identity(ca, tmp_path, "_provision")
    service_ca = CertificateAuthority.open(ca.dir)  # the service's own handle, used on its own thread
    service = ClaimService(Registry(str(db)), service_ca,
                           Endpoint(broker.url("claim_service"), broker.files.ca, cert, key),
                           Endpoint(broker.url("service"), broker.files.ca, cert, key))
    service.start()
    assert service.ready.wait(15), "claim service did not subscribe"
    yield Hub(ca, site, broker, db, registry, service, tmp_path)
    service.stop()
    service.registry.close()
    service_ca.close()
    registry.close()
    broker.close()
    site.close()
    ca.close()


def hub_worker(hub: Hub) -> HubWorker:
    cert, key = identity(hub.ca, hub.dir, "_hub")
    worker = HubWorker(SqliteBackend(str(hub.db)), "localhost", hub.broker.plan.service_port, client_id="hub-1")
    worker.client.tls_set(ca_certs=str(hub.broker.files.ca), certfile=str(cert), keyfile=str(key))
    worker.start()
    return worker


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_claim_to_a_syncing_agent_the_hub_shows_online(hub: Hub) -> None:
    token = hub.registry.create_claim("gate-01", "westlake", "gate", ttl_s=600)
    template = hub.dir / "gate.toml"
    template.write_text(TEMPLATE)
    dev = hub.dir / "device"
    hub_cmd_key = hub.dir / "hub-cmd.key"  # the hub's command key; its public half is shipped with the CA
    (hub.dir / "hub-cmd.pub").write_text(generate_key(hub_cmd_key))
    t0 = time.monotonic()
    r = hub.provision(dev, *hub.claim_args(token), "--template", str(template), "--label-png",
                      str(hub.dir / "label.png"), "--hub-key-file", str(hub.dir / "hub-cmd.pub"))
    took_provision = time.monotonic() - t0
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count(" ok (") == 8 and "[8/8] Printing the label" in r.stdout
    assert "gate-01 at westlake" in r.stdout and "registered by the claim service" in r.stdout
    assert (hub.dir / "label.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert mode(dev) == 0o700 and mode(dev / "var") == 0o700
    for f in ("device.key", "device.pem", "ca.pem", "agent.yaml", "device.csr"):
        assert mode(dev / f) == 0o600, f
    # The private key never left: the certificate the hub issued is for the key made on the device.
    key = pki.load_key((dev / "device.key").read_bytes())
    leaf = pki.load_certs((dev / "device.pem").read_bytes())[0]
    assert pki.key_id(leaf.public_key()) == pki.key_id(key.public_key())  # type: ignore[arg-type]
    secret = (dev / "device.key").read_bytes().splitlines()[1]  # a line of the key's base64
    hub_side = [p for d in (hub.ca.dir, hub.broker.dir) for p in d.iterdir()] + [hub.db]
    assert not [p for p in hub_side if p.is_file() and secret in p.read_bytes()]
    d = hub.registry.device("gate-01")
    assert d and d.status == "active" and d.via == "claim" and d.serial == format(leaf.serial_number, "x")

    # The technician's order: self-test, then start the agent (one broker session per device identity).
    t1 = time.monotonic()
    st = subprocess.run([PY, "-m", "provisioning.cli", "device", "selftest", "--config", str(dev / "agent.yaml")],
                        capture_output=True, text=True, timeout=120)
    took_selftest = time.monotonic() - t1
    worker = hub_worker(hub)
    agent = Proc([PY, "-m", "edge_agent", "run", "--config", str(dev / "agent.yaml")], hub.dir / "agent.log")
    try:
        wait_for(lambda: len(hub_records(hub.db, "gate.pass")) == 120, 60, "the agent's 120 passes at the hub")
        status = subprocess.run([PY, "-m", "hub", "status", "--db", str(hub.db), "--json"], capture_output=True,
                                text=True, check=True)
        row = next(x for x in json.loads(status.stdout) if x["device"] == "gate-01")
        assert row["online"] is True and row["site"] == "westlake" and row["gaps"] == []
        wait_for(lambda: subprocess.run([PY, "-m", "edge_agent", "status", "--config", str(dev / "agent.yaml")],
                                        capture_output=True).returncode == 0, 10, "agent status")
        busy = subprocess.run([PY, "-m", "provisioning.cli", "device", "selftest", "--config",
                               str(dev / "agent.yaml")], capture_output=True, text=True, timeout=60)
        assert busy.returncode == 2 and "the agent is running" in busy.stderr
        # The hub signs a command with the key provisioning gave the device and sends it as _hub over mTLS.
        hub_cert, hub_key = identity(hub.ca, hub.dir, "_hub")
        sent = subprocess.run([PY, "-m", "hub", "command", "send", "--key", str(hub_cmd_key), "--counters",
                               str(hub.dir / "hub-cmd.db"), "--broker", hub.broker.url("service"), "--ca",
                               str(hub.broker.files.ca), "--cert", str(hub_cert), "--client-key", str(hub_key),
                               "westlake", "gate-01", "ping"], capture_output=True, text=True, timeout=60)
        assert sent.returncode == 0 and '"ok": true' in sent.stdout, sent.stdout + sent.stderr
    finally:
        agent.terminate()
        worker.stop()
    assert st.returncode == 0, st.stdout + st.stderr
    assert "broker (mutual TLS)  PASS" in st.stdout and "sent to the hub: stored" in st.stdout
    assert "model yolox_nano" in st.stdout and "all passed" in st.stdout
    tests = hub.registry.selftests("gate-01")
    assert len(tests) == 1 and tests[0]["ok"] is True
    assert {c["name"] for c in tests[0]["report"]["checks"]} >= {"certificate", "clock", "broker (mutual TLS)"}
    print(f"\nRESULT provision_s={took_provision:.1f} selftest_s={took_selftest:.1f} "
          f"total_s={took_provision + took_selftest:.1f}")
    assert took_provision + took_selftest < 120


def test_reused_expired_and_unknown_tokens_are_refused(hub: Hub) -> None:
    token = hub.registry.create_claim("gate-02", "westlake", "gate", ttl_s=600)
    first = hub.dir / "first"
    assert hub.provision(first, *hub.claim_args(token)).returncode == 0
    cert = (first / "device.pem").read_bytes()
    # The same device asking again (its answer was lost) gets the same certificate...
    (first / "device.pem").unlink()
    again = hub.provision(first, *hub.claim_args(token))
    assert again.returncode == 0 and (first / "device.pem").read_bytes() == cert
    # ...but another device (another key) with the same token is refused, and told what to do.
    reused = hub.provision(hub.dir / "second", *hub.claim_args(token))
    assert reused.returncode == 1
    assert "used: this token was already used" in reused.stdout and "what to do: ask the hub operator" in reused.stdout
    assert not (hub.dir / "second" / "device.pem").exists() and not (hub.dir / "second" / "agent.yaml").exists()
    expired = hub.registry.create_claim("gate-03", "westlake", ttl_s=-1)
    r = hub.provision(hub.dir / "third", *hub.claim_args(expired))
    assert r.returncode == 1 and "expired: this token expired" in r.stdout
    r = hub.provision(hub.dir / "fourth", *hub.claim_args("x" * 32))
    assert r.returncode == 1 and "unknown: no such claim token" in r.stdout
    assert hub.registry.device("gate-03") is None
    assert hub.service.counts["refused.used"] == 1 and hub.service.counts["refused.expired"] == 1
    # A token the work order says is for another device is refused on the device before anything is written.
    other = hub.registry.create_claim("gate-04", "westlake", ttl_s=600)
    r = hub.provision(hub.dir / "fifth", *hub.claim_args(other), "--id", "gate-05")
    assert r.returncode == 1 and "the token is for device 'gate-04'" in r.stdout
    assert hub.provision(hub.dir / "sixth", *hub.claim_args(other), "--id", "gate-04").returncode == 0  # not used up


def test_offline_bundle_on_a_usb_stick(hub: Hub) -> None:
    usb, dev = hub.dir / "usb", hub.dir / "device"
    args = ["--usb", str(usb), "--id", "wc-gw-1", "--site", "westlake", "--role", "toilet"]
    first = hub.provision(dev, *args)
    assert first.returncode == 3, first.stdout + first.stderr
    assert "waiting" in first.stdout and (usb / "requests" / "wc-gw-1.json").exists()
    assert b"PRIVATE" not in (usb / "requests" / "wc-gw-1.json").read_bytes()
    signed = subprocess.run([PY, "-m", "provisioning.cli", "ca", "sign-usb", str(hub.site.dir), str(usb)],
                            capture_output=True, text=True)
    assert signed.returncode == 0 and "wc-gw-1: signed" in signed.stdout
    second = hub.provision(dev, *args)
    assert second.returncode == 0, second.stdout + second.stderr
    wait_for(lambda: hub.registry.device("wc-gw-1"), 30, "registration")
    d = hub.registry.device("wc-gw-1")
    assert d and d.via == "bundle" and d.site == "westlake"
    assert "registered" in second.stdout


def test_a_bundle_for_another_key_is_refused(hub: Hub) -> None:
    usb, dev = hub.dir / "usb", hub.dir / "device"
    args = ["--usb", str(usb), "--id", "gate-9", "--site", "westlake"]
    assert hub.provision(dev, *args).returncode == 3
    # Someone swaps the request's key for their own before the laptop signs it.
    req = json.loads((usb / "requests" / "gate-9.json").read_text())
    req["csr"] = pki.make_csr(pki.new_key(), "gate-9", "westlake").public_bytes(Encoding.PEM).decode()
    (usb / "requests" / "gate-9.json").write_text(json.dumps(req))
    assert subprocess.run([PY, "-m", "provisioning.cli", "ca", "sign-usb", str(hub.ca.dir), str(usb)]).returncode == 0
    r = hub.provision(dev, *args)
    assert r.returncode == 1 and "the certificate is for another key" in r.stdout
    assert "what to do:" in r.stdout and not (dev / "agent.yaml").exists()


def test_one_token_gives_one_certificate_when_two_services_race(tmp_path: Path) -> None:
    db = str(tmp_path / "hub.db")
    token = Registry(db).create_claim("gate-01", "westlake")
    wins: list[str] = []
    refusals: list[str] = []
    start = threading.Barrier(2)

    def redeem(n: int) -> None:
        reg = Registry(db)
        start.wait()
        try:
            reg.redeem(token, f"key-{n}", lambda c: Signed(f"cert-{n}", str(n), "fp", 0.0))
            wins.append(f"cert-{n}")
        except ClaimRefused as err:
            refusals.append(err.reason)
        reg.close()

    threads = [threading.Thread(target=redeem, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1 and refusals == ["used"]


def test_the_registry_admits_only_known_active_devices_at_their_site(tmp_path: Path) -> None:
    now = [1000.0]
    reg = Registry(str(tmp_path / "hub.db"), clock=lambda: now[0], flush_s=5)
    reg.register("gate-01", "westlake", "gate", Signed("c", "1", "fp", 0.0), "claim")
    assert reg.admit("gate-01", "westlake")
    assert not reg.admit("gate-01", "lingyin")  # its own id under another site's topics
    for _ in range(3):
        assert not reg.admit("ghost", "westlake")
    reg.retire("gate-01")
    assert not reg.admit("gate-01", "westlake")
    refused = reg.refusals()
    assert refused["ghost"]["count"] == 3 and refused["ghost"]["reason"] == "unknown"
    assert refused["gate-01"]["reason"] == "retired" and refused["gate-01"]["count"] == 2
    reg.close()


def test_claim_tokens_can_be_typed_as_an_option_value(tmp_path: Path) -> None:
    """A token is read from the command line: it must never look like an option (a url-safe token starts with
    '-' one time in 64)."""
    reg = Registry(str(tmp_path / "hub.db"))
    tokens = [reg.create_claim(f"gate-{i}", "westlake") for i in range(300)]
    assert len(set(tokens)) == 300 and not [t for t in tokens if t.startswith("-")]


def test_every_provisioning_command_has_help() -> None:
    from provisioning.cli import build_parser

    def walk(p: object) -> Iterator[object]:
        yield p
        for a in getattr(p, "_actions", []):
            if a.__class__.__name__ == "_SubParsersAction":
                for sub in a.choices.values():
                    yield from walk(sub)

    missing = []
    for parser in walk(build_parser()):
        for a in parser._actions:  # type: ignore[attr-defined]
            if a.help is None and a.dest != "help" and a.__class__.__name__ != "_SubParsersAction":
                missing.append(f"{parser.prog} {a.dest}")  # type: ignore[attr-defined]
    assert not missing, missing
    r = subprocess.run([sys.executable, "-m", "provisioning.cli", "device", "provision", "--help"],
                       capture_output=True, text=True)
    assert r.returncode == 0 and "--claim" in r.stdout


GATE_TEMPLATE = """[[producers]]
type = "gate"
venue = "westlake"
public_key = "O2onvM62pC1io6jQKm8Nc2UyFXcd4kOmOsBIoYtZ2ik="
capacity = 100
allowlist_key = "westlake"
[[producers.lanes]]
name = "a"
"""


def test_provisioning_writes_the_hub_key_and_a_random_allowlist_secret(tmp_path: Path) -> None:
    """A gate template: the allow-list secret becomes a random 0600 file (or the hub's, when given), never a
    value in the config; the hub's command key lands in commands.hub_key."""
    import yaml

    from provisioning.device import Inputs, _State, _write_config
    from provisioning.progress import Progress

    (tmp_path / "gate.toml").write_text(GATE_TEMPLATE)
    (tmp_path / "ca.pem").write_text("ca")
    pub = generate_key(tmp_path / "hub-cmd.key")
    written = []
    for given in (None, b"the-hub-s-site-secret-0123456789"):
        d = tmp_path / f"dev{len(written)}"
        if given:
            (tmp_path / "site.key").write_bytes(given)
        inp = Inputs(directory=d, ca=tmp_path / "ca.pem", broker="mqtts://hub:8883", template=tmp_path / "gate.toml",
                     hub_key=pub + "\n", allowlist_key=(tmp_path / "site.key") if given else None)
        st = _State(device="gate-01", site="westlake", role="gate", chain="cert")
        cfg = yaml.safe_load(_write_config(inp, st, d, Progress(1, io.StringIO())).read_text())
        gate = cfg["producers"][0]
        assert cfg["commands"]["hub_key"] == pub and "allowlist_key" not in gate
        secret = Path(gate["allowlist_key_file"])
        assert secret == d / "allowlist.key" and stat.S_IMODE(secret.stat().st_mode) == 0o600
        written.append(secret.read_bytes())
    assert len(written[0]) == 64 and bytes.fromhex(written[0].decode()) and written[1] == given
