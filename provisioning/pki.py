"""Keys, CSRs and certificates (cryptography), and the files that hold them.

Device keys are ECDSA P-256: OpenSSL, mbedTLS (the ESP32's TLS) and every TPM/secure element the
project might meet support it. Secrets are written 0600 inside 0700 directories, atomically.
Raises PkiError for anything malformed or of a refused type.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from provisioning import PkiError

IDENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")  # device and site ids (edge_agent.config.models)
PEM_MAX = 64 * 1024
PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey
PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


def new_key() -> ec.EllipticCurvePrivateKey:
    """A fresh P-256 private key."""
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def load_key(data: bytes) -> PrivateKey:
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as err:
        raise PkiError(f"not a readable unencrypted PEM private key: {err}") from err
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise PkiError(f"{type(key).__name__} keys are not supported (use P-256)")
    return key


def check_identity(name: str, what: str = "device id") -> str:
    if not IDENT.match(name or ""):
        raise PkiError(f"{what} {name!r} must match {IDENT.pattern} (it becomes an MQTT topic level)")
    return name


def make_csr(key: PrivateKey, device: str, site: str) -> x509.CertificateSigningRequest:
    """A CSR for `device` at `site`, signed with its own key (proof of possession)."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, check_identity(device)),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, check_identity(site, "site id"))])
    return x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, hashes.SHA256())


def load_csr(data: bytes | str) -> x509.CertificateSigningRequest:
    """Parse a PEM CSR and check its signature and key type (PkiError otherwise)."""
    raw = data.encode() if isinstance(data, str) else data
    if len(raw) > PEM_MAX:
        raise PkiError(f"CSR of {len(raw)} bytes is too big")
    try:
        csr = x509.load_pem_x509_csr(raw)
        valid = csr.is_signature_valid
        public = csr.public_key()
    except (ValueError, TypeError, UnsupportedAlgorithm) as err:
        raise PkiError(f"not a readable PEM CSR: {err}") from err
    if not valid:
        raise PkiError("the CSR's signature does not verify (the key that asks must sign)")
    check_public_key(public)
    return csr


def check_public_key(public: object) -> PublicKey:
    """Only keys every client in the project can use: EC P-256/P-384, RSA of 2048 bits or more."""
    if isinstance(public, ec.EllipticCurvePublicKey):
        if public.curve.name not in ("secp256r1", "secp384r1"):
            raise PkiError(f"EC curve {public.curve.name} refused (use P-256)")
        return public
    if isinstance(public, rsa.RSAPublicKey):
        if public.key_size < 2048:
            raise PkiError(f"RSA key of {public.key_size} bits refused (2048 at least)")
        return public
    raise PkiError(f"{type(public).__name__} keys are refused (use P-256)")


def load_certs(data: bytes | str) -> list[x509.Certificate]:
    """Every certificate in a PEM text (PkiError when there is none or one is broken)."""
    raw = data.encode() if isinstance(data, str) else data
    try:
        certs = x509.load_pem_x509_certificates(raw)
    except ValueError as err:
        raise PkiError(f"not readable PEM certificates: {err}") from err
    return certs


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 of the DER certificate, hex."""
    return cert.fingerprint(hashes.SHA256()).hex()


def key_id(public: PublicKey) -> str:
    """SHA-256 of the DER SubjectPublicKeyInfo, hex: the same key gives the same id."""
    der = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


def common_name(name: x509.Name) -> str:
    attrs = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(attrs[0].value) if attrs else ""


# ------------------------------------------------------------------ files


def private_dir(path: Path) -> Path:
    """Create `path` (and parents) and make it 0700."""
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path


def write_file(path: Path, data: bytes, mode: int = 0o600) -> Path:
    """Atomic write: temporary file with `mode` from the start, fsync, rename, fsync the directory."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)  # an existing tmp keeps its old mode through O_CREAT
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
    return path


def write_secret(path: Path, data: bytes) -> Path:
    """0600 file in a 0700 directory."""
    private_dir(path.parent)
    return write_file(path, data, 0o600)
