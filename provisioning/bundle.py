"""Offline provisioning with a USB stick: the device writes its request, the technician's laptop signs it.

On the stick: `requests/<device>.json` {"v": 1, "device", "site", "role", "csr"} written by the device
(the key stays on the device), and `bundles/<device>.json` {"v": 1, "device", "site", "role", "cert"}
written by `venue-provision ca sign-usb` on the laptop (the CA there is usually the site CA). A bundle
needs no protection of its own: its certificate only works with the key that never left the device, and
the device checks that it chains to the city CA. Raises BundleError for unreadable or mismatched files.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from provisioning import BundleError, CAError, PkiError, pki
from provisioning.ca import CertificateAuthority

REQUESTS, BUNDLES = "requests", "bundles"
MAX_FILE = 64 * 1024


def write_request(usb: Path, device: str, site: str, role: str | None, csr_pem: str) -> Path:
    d = Path(usb) / REQUESTS
    d.mkdir(parents=True, exist_ok=True)
    doc = {"v": 1, "device": device, "site": site, "role": role, "csr": csr_pem}
    return pki.write_file(d / f"{device}.json", json.dumps(doc, indent=1).encode(), 0o644)


def _read(path: Path) -> dict[str, Any]:
    try:
        if path.stat().st_size > MAX_FILE:
            raise BundleError(f"{path} is too big to be ours")
        doc = json.loads(path.read_bytes())
    except (OSError, ValueError) as err:
        raise BundleError(f"{path}: unreadable ({err})") from err
    if not isinstance(doc, dict) or doc.get("v") != 1 or not all(
            isinstance(doc.get(k), str) for k in ("device", "site")):
        raise BundleError(f"{path}: not a version 1 request or bundle")
    return doc


def read_bundle(usb: Path, device: str) -> dict[str, Any] | None:
    """The signed bundle for `device`, or None while the laptop has not signed it yet."""
    path = Path(usb) / BUNDLES / f"{device}.json"
    if not path.exists():
        return None
    doc = _read(path)
    if doc["device"] != device or not isinstance(doc.get("cert"), str):
        raise BundleError(f"{path} is not a bundle for {device}")
    return doc


def sign_usb(ca: CertificateAuthority, usb: Path, days: int = 730, replace: bool = False) -> list[tuple[str, str]]:
    """Sign every request on the stick that has no bundle yet. Returns (device, what happened) per request."""
    out: list[tuple[str, str]] = []
    reqs = sorted((Path(usb) / REQUESTS).glob("*.json"))
    for path in reqs:
        try:
            doc = _read(path)
            device = doc["device"]
            target = Path(usb) / BUNDLES / f"{device}.json"
            if path.stem != device:
                raise BundleError(f"{path.name} names device {device!r}")
            if target.exists():
                out.append((device, "already signed"))
                continue
            cert = ca.sign_csr(str(doc.get("csr", "")), device, doc["site"], days=days, replace=replace)
            role = doc.get("role") if isinstance(doc.get("role"), str) else None
            bundle = {"v": 1, "device": device, "site": doc["site"], "role": role,
                      "cert": ca.chain_for(cert).decode()}
            target.parent.mkdir(parents=True, exist_ok=True)
            pki.write_file(target, json.dumps(bundle, indent=1).encode(), 0o644)
            out.append((device, f"signed, serial {cert.serial_number:x}"))
        except (BundleError, CAError, PkiError) as err:
            out.append((path.stem, f"refused: {err}"))
    return out
