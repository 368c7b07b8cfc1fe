"""`venue-provision device provision`: give this device its identity, step by step.

Steps: check the inputs → make the key pair here (reused when one exists, so a retry asks with the same
key) → certificate request → certificate by claim (online) or from the USB bundle (offline) → check the
certificate against the key and the city CA → write the agent config, certificate and CA (0600, in a
0700 directory) → register at the hub → print the label. Every step prints its outcome; a failed step
raises StepFailed with what to do. Offline, the first run leaves the request on the stick and raises
Pending; the second run (after `ca sign-usb` on the laptop) finishes.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import yaml
from cryptography import x509

from provisioning import BundleError, Pending, PkiError, StepFailed, bundle, pki
from provisioning.ca import verify_chain
from provisioning.claim import ClaimRequest, request_certificate
from provisioning.label import label_png, label_text
from provisioning.progress import Progress

STEPS = 8


@dataclass(frozen=True)
class Inputs:
    """What the technician gives (scripted or typed)."""

    directory: Path  # where the agent's identity and config live, e.g. /etc/edge-agent
    ca: Path  # the city CA certificate (the trust anchor; shipped in the image or on the stick)
    broker: str  # the city broker for devices, mqtts://host:8883
    device: str | None = None  # required offline; with a claim, the token says it
    site: str | None = None
    role: str = "gateway"
    claim: str | None = None  # one-time token
    claim_url: str | None = None  # the claim broker, mqtts://host:8884
    usb: Path | None = None  # offline: the stick's mount point
    template: Path | None = None  # an agent config (TOML/YAML) to start from: producers, store, sync
    label_png: Path | None = None
    new_key: bool = False  # make a new key even if one exists (re-provisioning after a compromise)
    register_timeout_s: float = 20.0
    meta: tuple[tuple[str, str], ...] = ()
    hub_key: str | None = None  # the hub's command-signing public key (base64); unset: the device refuses commands
    allowlist_key: Path | None = None  # the site's allow-list secret from the hub; unset: a new random one


@dataclass(frozen=True)
class Outcome:
    device: str
    site: str
    role: str | None
    config: Path
    cert: Path
    key: Path
    fingerprint: str
    serial: str
    registered: str


@dataclass
class _State:
    key: Any = None
    csr: str = ""
    device: str = ""
    site: str = ""
    role: str | None = None
    chain: str = ""
    via: str = ""
    leaf: x509.Certificate | None = None


def provision(inp: Inputs, out: TextIO = sys.stdout, clock: Callable[[], float] = time.monotonic) -> Outcome:
    p = Progress(STEPS, out, clock)
    st = _State()
    with p.step("Checking the inputs", "fix the option named above and run again"):
        _check_inputs(inp, p)
    d = pki.private_dir(inp.directory)
    with p.step("Making the key pair on this device", f"check that {d} is writable and has space"):
        st.key = _key(d / "device.key", inp.new_key, p)
    with p.step("Writing the certificate request"):
        site = inp.site or "unclaimed"
        st.csr = pki.make_csr(st.key, inp.device or "unclaimed", site).public_bytes(_pem()).decode()
        pki.write_secret(d / "device.csr", st.csr.encode())
    if inp.claim:
        with p.step("Claiming the certificate from the hub", "ask the hub operator for a new claim token "
                    "(`venue-provision claim create`)"):
            _claim(inp, st, p)
    else:
        with p.step("Reading the signed bundle from the USB stick", "check the stick is mounted and writable"):
            _bundle(inp, st, p)
    with p.step("Checking the certificate", "the certificate does not fit this device: provision it again"):
        st.leaf = _verify(inp, st, p)
    with p.step("Writing the agent configuration", "fix the template named above"):
        config = _write_config(inp, st, d, p)
    with p.step("Registering the device at the hub"):
        registered = _register(inp, st, d, p)
    fp, serial = pki.fingerprint(st.leaf), format(st.leaf.serial_number, "x")
    with p.step("Printing the label"):
        print("", file=out)
        out.write(label_text(st.device, st.site, st.role, fp, serial))
        if inp.label_png:
            label_png(inp.label_png, st.device, st.site, fp)
            p.detail = f"PNG in {inp.label_png}"
    return Outcome(st.device, st.site, st.role, config, d / "device.pem", d / "device.key", fp, serial, registered)


def _pem() -> Any:
    from cryptography.hazmat.primitives.serialization import Encoding

    return Encoding.PEM


def _check_inputs(inp: Inputs, p: Progress) -> None:
    if not inp.ca.is_file():
        raise StepFailed("inputs", f"city CA certificate {inp.ca} not found",
                         "pass --ca with the city CA's ca.pem (from the image, or copied onto the USB stick)")
    pki.load_certs(inp.ca.read_bytes())
    if not inp.broker.startswith("mqtts://"):
        raise StepFailed("inputs", f"broker {inp.broker!r} is not mqtts://", "use the city broker's TLS address")
    if bool(inp.claim) == bool(inp.usb):
        raise StepFailed("inputs", "give either --claim TOKEN (online) or --usb DIR (offline)",
                         "online: a claim token from the hub operator; offline: the USB stick's mount point")
    if inp.claim and not inp.claim_url:
        raise StepFailed("inputs", "--claim needs --claim-url", "the hub's claim broker, mqtts://host:8884")
    if inp.usb and not (inp.device and inp.site):
        raise StepFailed("inputs", "offline provisioning needs --id and --site", "they are on the work order")
    for name, value in (("--id", inp.device), ("--site", inp.site)):
        if value is not None:
            pki.check_identity(value, name)
    p.detail = "online (claim)" if inp.claim else f"offline (USB at {inp.usb})"


def _key(path: Path, new: bool, p: Progress) -> Any:
    if path.exists() and not new:
        p.detail = f"kept the existing key {path}"
        return pki.load_key(path.read_bytes())
    key = pki.new_key()
    pki.write_secret(path, pki.key_pem(key))
    p.detail = f"P-256, {path} (0600)"
    return key


def _claim(inp: Inputs, st: _State, p: Progress) -> None:
    assert inp.claim and inp.claim_url
    answer = request_certificate(inp.claim_url, inp.ca, ClaimRequest(inp.claim, st.csr, dict(inp.meta),
                                                                                inp.device))
    for given, got, what in ((inp.device, answer.device, "device"), (inp.site, answer.site, "site")):
        if given and given != got:
            raise StepFailed("claim", f"the token is for {what} {got!r}, not {given!r}",
                             "check the work order; the hub operator made this token for another device")
    st.device, st.site, st.role, st.chain, st.via = answer.device, answer.site, answer.role, answer.cert, "claim"
    p.detail = f"{st.device} at {st.site}"


def _bundle(inp: Inputs, st: _State, p: Progress) -> None:
    assert inp.usb and inp.device and inp.site
    try:
        doc = bundle.read_bundle(inp.usb, inp.device)
    except BundleError as err:
        raise StepFailed("bundle", str(err), "sign the request again on the laptop (`venue-provision ca "
                         "sign-usb`)") from err
    if doc is None:
        path = bundle.write_request(inp.usb, inp.device, inp.site, inp.role, st.csr)
        p.detail = f"request written to {path}"
        raise Pending(f"request for {inp.device} written to {path}: on the laptop run `venue-provision ca sign-usb "
                      f"CA_DIR {inp.usb}`, then run this command again with the stick")
    st.device, st.site, st.chain, st.via = inp.device, str(doc["site"]), str(doc["cert"]), "bundle"
    st.role = doc.get("role") if isinstance(doc.get("role"), str) else inp.role
    p.detail = "bundle found"


def _verify(inp: Inputs, st: _State, p: Progress) -> x509.Certificate:
    chain = pki.load_certs(st.chain)
    leaf = chain[0]
    if pki.key_id(pki.check_public_key(leaf.public_key())) != pki.key_id(st.key.public_key()):
        raise PkiError("the certificate is for another key (was this device's key replaced since the request?)")
    if pki.common_name(leaf.subject) != st.device:
        raise PkiError(f"the certificate names {pki.common_name(leaf.subject)!r}, not {st.device!r}")
    roots = pki.load_certs(inp.ca.read_bytes())
    verify_chain(leaf, chain[1:], roots[-1])
    days = (leaf.not_valid_after_utc.timestamp() - time.time()) / 86400
    p.detail = f"serial {leaf.serial_number:x}, valid {days:.0f} days"
    return leaf


def _write_config(inp: Inputs, st: _State, d: Path, p: Progress) -> Path:
    from edge_agent.config.loader import ConfigError, parse_text, validate
    from edge_agent.registry import AgentConfig

    data: dict[str, Any] = {}
    if inp.template:
        fmt = "toml" if inp.template.suffix == ".toml" else "yaml"
        data, _ = parse_text(inp.template.read_text(encoding="utf-8"), fmt)
    ca, cert = d / "ca.pem", d / "device.pem"
    pki.write_secret(cert, st.chain.encode())
    pki.write_secret(ca, inp.ca.read_bytes())
    device = {**data.get("device", {}), "id": st.device, "site": st.site, "role": st.role or inp.role}
    mqtt = {**data.get("mqtt", {}), "url": inp.broker,
            "tls": {"ca": str(ca), "cert": str(cert), "key": str(d / "device.key")}}
    for stale in ("client_id", "username", "password_env"):  # the certificate is the identity
        mqtt.pop(stale, None)
    store = {"path": str(d / "var" / "outbox.db"), **data.get("store", {})}
    data = {**data, "device": device, "mqtt": mqtt, "store": store}
    if inp.hub_key:
        data["commands"] = {**data.get("commands", {}), "hub_key": inp.hub_key.strip()}
    gates = [g for g in data.get("producers", []) if isinstance(g, dict) and g.get("type") == "gate"]
    if gates:
        secret = _allowlist_secret(inp, d)
        for g in gates:
            g.pop("allowlist_key", None)  # never a secret in the config file
            if not g.get("allowlist_key_env"):
                g["allowlist_key_file"] = str(secret)
    try:
        validate(AgentConfig, data, {}, str(inp.template or "generated config"))
    except ConfigError as err:
        raise StepFailed("config", str(err), "fix the template's keys named above") from err
    path = pki.write_secret(d / "agent.yaml", yaml.safe_dump(data, sort_keys=False).encode())
    pki.private_dir(d / "var")
    p.detail = f"{path} (0600)"
    return path


def _allowlist_secret(inp: Inputs, d: Path) -> Path:
    """The site's allow-list secret, 0600: the one the hub hashes lists with, or a new random one (32 bytes,
    hex) that the technician hands to the hub (printed path, never the value)."""
    import secrets

    path = d / "allowlist.key"
    if inp.allowlist_key is not None:
        pki.write_secret(path, inp.allowlist_key.read_bytes().strip())
    elif not path.exists():
        pki.write_secret(path, secrets.token_hex(32).encode())
    return path


def _register(inp: Inputs, st: _State, d: Path, p: Progress) -> str:
    if st.via == "claim":
        p.detail = "registered by the claim service"
        return "claim"
    from provisioning.hubcall import call_hub

    try:
        args = call_hub(inp.broker, st.site, st.device, (d / "ca.pem", d / "device.pem", d / "device.key"),
                        "provision.register", True, {"cert": st.chain, "role": st.role},
                        timeout_s=inp.register_timeout_s)
    except StepFailed as err:
        # Offline sites: the certificate works; registration can follow (`venue-provision device register`).
        p.detail = f"NOT YET: {err} — run `venue-provision device register` once the hub is reachable"
        return "pending"
    if not args.get("ok"):
        raise StepFailed("register", f"the hub refused: {args.get('error')}",
                         "the certificate does not chain to the hub's CA: provision again with the city's CA")
    p.detail = "registered"
    return "registered"
