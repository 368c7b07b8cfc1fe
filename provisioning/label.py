"""The device label: its id as a QR code (segno) in the terminal and/or as a PNG, with the facts beside it.

The QR text is `VENUE:1:<site>:<device>:<first 16 hex of the certificate's SHA-256>`, so whoever scans
the sticker can look the device up and tell its certificate from a replaced one.
"""

from __future__ import annotations

import io
from pathlib import Path

import segno


def label_data(device: str, site: str, fingerprint: str) -> str:
    return f"VENUE:1:{site}:{device}:{fingerprint[:16]}"


def label_text(device: str, site: str, role: str | None, fingerprint: str, serial: str) -> str:
    """The QR code drawn with block characters, then one fact per line."""
    qr = segno.make(label_data(device, site, fingerprint), error="m")
    buf = io.StringIO()
    qr.terminal(out=buf, compact=True, border=2)
    facts = [f"device  {device}", f"site    {site}", f"role    {role or '-'}", f"serial  {serial}",
             f"sha256  {fingerprint[:16]}…"]
    return buf.getvalue() + "\n".join(facts) + "\n"


def label_png(path: Path, device: str, site: str, fingerprint: str, scale: int = 8) -> Path:
    """A PNG of the QR code (no Pillow needed) for a label printer."""
    segno.make(label_data(device, site, fingerprint), error="m").save(str(path), kind="png", scale=scale, border=4)
    return path
