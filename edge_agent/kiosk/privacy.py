"""Personal data at rest and on the wire: ID numbers encrypted on the device, sealed for the hub, masked
everywhere a person or a log can see them.

- `Vault`: AES-256-GCM with a 32-byte key read from a file of mode 0600 (created, 0600, when missing) or
  from the OS keyring; the key is never in the config. `encrypt` → "v1.<base64>" text, `decrypt` back.
- `seal(text, hub_public)`: X25519 ephemeral-static + HKDF-SHA256 + AES-GCM, so only the hub's private key
  opens it (`open_sealed`). The registration record carries the sealed ID number, never the clear one.
- `mask_id`: "6101**********1234" (first 4, last 4).

Raised: KeyFileError (missing keyring backend, key of the wrong size, a key file others can read),
ValueError (a ciphertext that does not decrypt).
"""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from edge_agent.core.idnumber import mask

KEYRING_SERVICE = "smart-venue-edge-kiosk"
SEAL_INFO = b"svedge kiosk seal v1"


class KeyFileError(Exception):
    """The ID-number key cannot be loaded safely."""


def mask_id(number: str) -> str:
    """For screens, receipts and logs."""
    return mask(number, head=4)


def load_key(source: str, path: Path, create: bool = True) -> bytes:
    """The 32-byte device key from a 0600 file (made when missing and `create`) or the OS keyring."""
    if source == "keyring":
        return _keyring_key(path.name)
    if not path.exists():
        if not create:
            raise KeyFileError(f"key file {path} does not exist")
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(os.urandom(32))
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise KeyFileError(f"key file {path} has mode {mode:o}; it must be readable by its owner only (0600)")
    key = path.read_bytes()
    if len(key) != 32:
        raise KeyFileError(f"key file {path} holds {len(key)} bytes, not 32")
    return key


def _keyring_key(name: str) -> bytes:
    try:
        import keyring
    except ImportError as err:
        raise KeyFileError("key_source = 'keyring' needs the keyring package (pip install keyring)") from err
    try:
        text = keyring.get_password(KEYRING_SERVICE, name)
        if text is None:
            text = base64.b64encode(os.urandom(32)).decode()
            keyring.set_password(KEYRING_SERVICE, name, text)
    except Exception as err:  # noqa: BLE001 - keyring backends raise their own types (no backend, locked)
        raise KeyFileError(f"OS keyring: {err}") from err
    key = base64.b64decode(text)
    if len(key) != 32:
        raise KeyFileError("the keyring entry is not a 32-byte key")
    return key


class Vault:
    """Encrypts short secrets (ID numbers) for the local SQLite files."""

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("a vault key is 32 bytes")
        self._aead = AESGCM(key)

    def encrypt(self, text: str, context: bytes = b"") -> str:
        nonce = os.urandom(12)
        return "v1." + base64.b64encode(nonce + self._aead.encrypt(nonce, text.encode(), context)).decode()

    def decrypt(self, blob: str, context: bytes = b"") -> str:
        if not blob.startswith("v1."):
            raise ValueError("not a vault ciphertext")
        raw = base64.b64decode(blob[3:])
        try:
            return self._aead.decrypt(raw[:12], raw[12:], context).decode()
        except InvalidTag as err:
            raise ValueError("ciphertext does not decrypt with this key") from err


def _seal_key(shared: bytes, eph: bytes) -> bytes:
    return HKDF(hashes.SHA256(), 32, salt=eph, info=SEAL_INFO).derive(shared)


def seal(text: str, hub_public: bytes) -> str:
    """Encrypt for the holder of the hub's X25519 private key only."""
    eph = X25519PrivateKey.generate()
    eph_pub = eph.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    key = _seal_key(eph.exchange(X25519PublicKey.from_public_bytes(hub_public)), eph_pub)
    nonce = os.urandom(12)
    return base64.b64encode(eph_pub + nonce + AESGCM(key).encrypt(nonce, text.encode(), None)).decode()


def open_sealed(blob: str, hub_private: X25519PrivateKey) -> str:
    """The hub side of `seal` (ValueError when it was not sealed to this key)."""
    raw = base64.b64decode(blob)
    eph_pub, nonce, ct = raw[:32], raw[32:44], raw[44:]
    key = _seal_key(hub_private.exchange(X25519PublicKey.from_public_bytes(eph_pub)), eph_pub)
    try:
        return AESGCM(key).decrypt(nonce, ct, None).decode()
    except InvalidTag as err:
        raise ValueError("not sealed to this key") from err
