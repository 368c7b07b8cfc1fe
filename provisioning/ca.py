"""A city or site certificate authority in one directory: issue, revoke, publish the CRL.

Layout (the directory is 0700): `ca.key` (0600), `ca.pem`, `chain.pem` (this CA and its parents, the
chain a leaf presents), `crl.pem`, `index.db` (every certificate issued, SQLite with named migrations).
A site CA (`init(..., parent=city_ca, site="westlake")`) lives on a technician's laptop for offline
signing and may only issue devices of its site; the broker trusts the city CA and reads every CA's CRL.

Identities (the certificate CN becomes the MQTT user name on the broker):
- device: CN = device id (`[A-Za-z0-9][A-Za-z0-9_.-]{0,63}`), O = site, EKU clientAuth;
- hub / service: CN starting with `_` (`_hub`, `_provision`), so no device id can ever equal one;
- server: the broker, SANs for its host names and addresses, EKU serverAuth.

Guarantees: one valid certificate per device name (issuing again needs `replace=True`, which revokes
the old one); a revoked serial stays in every later CRL. Raises CAError (refusals, a missing or damaged
directory) and PkiError (bad CSR or key).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from edge_agent.store.migrations import Migration, migrate
from provisioning import CAError, PkiError, pki

Kind = Literal["device", "hub", "server", "ca"]
SERVICE = re.compile(r"^_[a-z0-9][a-z0-9-]{0,30}$")
CRL_DAYS = 90

CA_MIGRATIONS: list[Migration] = [
    ("0001_ca_index", [
        "CREATE TABLE certs (serial TEXT PRIMARY KEY, name TEXT NOT NULL, kind TEXT NOT NULL, site TEXT,"
        " fingerprint TEXT NOT NULL, key_id TEXT NOT NULL, issued REAL NOT NULL, not_after REAL NOT NULL,"
        " revoked REAL, reason TEXT, pem TEXT NOT NULL)",
        "CREATE INDEX certs_name ON certs (name)",
        "CREATE TABLE ca_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    ]),
]


@dataclass(frozen=True)
class Issued:
    serial: str
    name: str
    kind: str
    site: str | None
    fingerprint: str
    not_after: float
    revoked: float | None
    reason: str | None


def _utc(t: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(t, dt.UTC)


def _name(cn: str, site: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if site:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, site))
    return x509.Name(attrs)


class CertificateAuthority:
    """One CA directory. Use `init()` once, then `open()`."""

    def __init__(self, directory: Path, clock: Callable[[], float] = time.time) -> None:
        self.dir, self.clock = Path(directory), clock
        try:
            self.key = pki.load_key((self.dir / "ca.key").read_bytes())
            self.chain = pki.load_certs((self.dir / "chain.pem").read_bytes())
        except FileNotFoundError as err:
            raise CAError(f"{self.dir} is not a CA directory ({err.filename} missing): run "
                          "`venue-provision ca init` first") from err
        except PkiError as err:
            raise CAError(f"{self.dir}: damaged CA files: {err}") from err
        self.cert = self.chain[0]
        # One user at a time, but not always the thread that opened it (the claim service's worker).
        self.db = sqlite3.connect(self.dir / "index.db", isolation_level=None, timeout=30, check_same_thread=False)
        self.db.execute("PRAGMA synchronous=FULL")
        migrate(self.db, CA_MIGRATIONS)
        self.site = self._meta("site") or None

    @classmethod
    def open(cls, directory: Path, clock: Callable[[], float] = time.time) -> CertificateAuthority:
        return cls(directory, clock)

    @classmethod
    def init(cls, directory: Path, name: str, *, parent: CertificateAuthority | None = None,
             site: str | None = None, days: int = 3650,
             clock: Callable[[], float] = time.time) -> CertificateAuthority:
        """Create a root CA, or a site CA signed by `parent` (which records it)."""
        directory = Path(directory)
        if (directory / "ca.key").exists():
            raise CAError(f"{directory} already holds a CA; refusing to overwrite its key")
        if site:
            pki.check_identity(site, "site id")
        key = pki.new_key()
        now = clock()
        if parent is None:
            cert = _ca_builder(name, key.public_key(), _name(name), now, days).sign(key, hashes.SHA256())
            chain = [cert]
        else:
            cert = parent._sign(_ca_builder(name, key.public_key(), parent.cert.subject, now, days), "ca", name,
                                site)
            chain = [cert, *parent.chain]
        pki.private_dir(directory)
        pki.write_secret(directory / "ca.key", pki.key_pem(key))
        pki.write_file(directory / "ca.pem", pki.cert_pem(cert), 0o644)
        pki.write_file(directory / "chain.pem", b"".join(pki.cert_pem(c) for c in chain), 0o644)
        ca = cls(directory, clock)
        if site:
            ca._set_meta("site", site)
            ca.site = site
        ca.write_crl()
        return ca

    # ------------------------------------------------------------------ issuing

    def sign_csr(self, csr_pem: bytes | str, device: str, site: str, *, days: int = 730,
                 replace: bool = False) -> x509.Certificate:
        """A device certificate for the key in the CSR; the identity is ours to give, not the CSR's."""
        csr = pki.load_csr(csr_pem)
        return self.issue_device(csr.public_key(), device, site, days=days, replace=replace)

    def issue_device(self, public: object, device: str, site: str, *, days: int = 730,
                     replace: bool = False) -> x509.Certificate:
        key = pki.check_public_key(public)
        pki.check_identity(device)
        pki.check_identity(site, "site id")
        if self.site and site != self.site:
            raise CAError(f"this CA is for site {self.site!r} only, not {site!r}")
        self._one_valid(device, replace)
        b = self._leaf(device, site, key, days, ExtendedKeyUsageOID.CLIENT_AUTH)
        b = b.add_extension(x509.SubjectAlternativeName(
            [x509.UniformResourceIdentifier(f"urn:venue:v1:device:{site}:{device}")]), critical=False)
        return self._sign(b, "device", device, site)

    def issue_service(self, public: object, name: str, *, days: int = 825,
                      replace: bool = False) -> x509.Certificate:
        """A hub-side identity (`_hub`, `_provision`): the ACL gives it the hub's rights."""
        key = pki.check_public_key(public)
        if not SERVICE.match(name):
            raise CAError(f"service identity {name!r} must match {SERVICE.pattern} (e.g. _hub)")
        if self.site:
            raise CAError("a site CA issues devices only; issue hub identities with the city CA")
        self._one_valid(name, replace)
        return self._sign(self._leaf(name, None, key, days, ExtendedKeyUsageOID.CLIENT_AUTH), "hub", name, None)

    def issue_server(self, public: object, host: str, dns: list[str], ips: list[str], *,
                     days: int = 825) -> x509.Certificate:
        """The broker's certificate, valid for every name and address clients use to reach it."""
        key = pki.check_public_key(public)
        if self.site:
            raise CAError("a site CA issues devices only; issue the broker certificate with the city CA")
        sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dict.fromkeys([host, *dns]) if d]
        try:
            sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
        except ValueError as err:
            raise CAError(f"bad broker address: {err}") from err
        b = self._leaf(host, None, key, days, ExtendedKeyUsageOID.SERVER_AUTH)
        b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return self._sign(b, "server", host, None)

    def _leaf(self, cn: str, site: str | None, key: pki.PublicKey, days: int,
              eku: x509.ObjectIdentifier) -> x509.CertificateBuilder:
        now = self.clock()
        not_after = min(now + days * 86400, self.cert.not_valid_after_utc.timestamp())
        return (x509.CertificateBuilder().subject_name(_name(cn, site)).issuer_name(self.cert.subject)
                .public_key(key).serial_number(x509.random_serial_number())
                .not_valid_before(_utc(now - 300)).not_valid_after(_utc(not_after))
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False),
                               critical=True)
                .add_extension(x509.ExtendedKeyUsage([eku]), critical=False)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                               critical=False))

    def _sign(self, builder: x509.CertificateBuilder, kind: Kind, name: str, site: str | None) -> x509.Certificate:
        cert = builder.sign(self.key, hashes.SHA256())
        self.db.execute("INSERT INTO certs VALUES (?,?,?,?,?,?,?,?,NULL,NULL,?)",
                        (format(cert.serial_number, "x"), name, kind, site, pki.fingerprint(cert),
                         pki.key_id(pki.check_public_key(cert.public_key())), self.clock(),
                         cert.not_valid_after_utc.timestamp(), pki.cert_pem(cert).decode()))
        return cert

    def _one_valid(self, name: str, replace: bool) -> None:
        now = self.clock()
        live = [r[0] for r in self.db.execute(
            "SELECT serial FROM certs WHERE name=? AND revoked IS NULL AND not_after > ?", (name, now))]
        if live and not replace:
            raise CAError(f"{name!r} already has a valid certificate (serial {live[0]}); re-provisioning it "
                          "revokes that one: pass --replace")
        for serial in live:
            self.revoke(serial, "superseded", write=False)

    def chain_for(self, cert: x509.Certificate) -> bytes:
        """The PEM a client presents: its certificate, then this CA's chain."""
        return pki.cert_pem(cert) + b"".join(pki.cert_pem(c) for c in self.chain)

    # ------------------------------------------------------------------ revocation

    def revoke(self, serial_or_name: str, reason: str = "unspecified", *, write: bool = True) -> list[str]:
        """Revoke one serial (hex) or every live certificate of a name; rewrites crl.pem. Returns serials."""
        rows = [r[0] for r in self.db.execute(
            "SELECT serial FROM certs WHERE (serial=? OR name=?) AND revoked IS NULL",
            (serial_or_name.lower(), serial_or_name))]
        if not rows:
            raise CAError(f"no unrevoked certificate with serial or name {serial_or_name!r} in this CA")
        self.db.executemany("UPDATE certs SET revoked=?, reason=? WHERE serial=?",
                            [(self.clock(), reason, s) for s in rows])
        if write:
            self.write_crl()
        return rows

    def crl(self, days: int = CRL_DAYS) -> x509.CertificateRevocationList:
        """A CRL of every serial ever revoked here, numbered one above the last."""
        now = self.clock()
        number = int(self._meta("crl_number") or 0) + 1
        self._set_meta("crl_number", str(number))
        b = (x509.CertificateRevocationListBuilder().issuer_name(self.cert.subject)
             .last_update(_utc(now - 60)).next_update(_utc(now + days * 86400))
             .add_extension(x509.CRLNumber(number), critical=False))
        for serial, revoked in self.db.execute("SELECT serial, revoked FROM certs WHERE revoked IS NOT NULL"):
            b = b.add_revoked_certificate(x509.RevokedCertificateBuilder().serial_number(int(serial, 16))
                                          .revocation_date(_utc(revoked)).build())
        return b.sign(self.key, hashes.SHA256())

    def write_crl(self, days: int = CRL_DAYS) -> Path:
        from cryptography.hazmat.primitives.serialization import Encoding

        return pki.write_file(self.dir / "crl.pem", self.crl(days).public_bytes(Encoding.PEM), 0o644)

    def issued(self) -> list[Issued]:
        return [Issued(*r) for r in self.db.execute(
            "SELECT serial, name, kind, site, fingerprint, not_after, revoked, reason FROM certs ORDER BY issued")]

    def lookup(self, cert: x509.Certificate) -> Issued | None:
        row = self.db.execute("SELECT serial, name, kind, site, fingerprint, not_after, revoked, reason FROM certs"
                              " WHERE serial=?", (format(cert.serial_number, "x"),)).fetchone()
        return Issued(*row) if row else None

    def _meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM ca_meta WHERE key=?", (key,)).fetchone()
        return str(row[0]) if row else None

    def _set_meta(self, key: str, value: str) -> None:
        self.db.execute("INSERT INTO ca_meta VALUES (?,?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                        (key, value))

    def close(self) -> None:
        self.db.close()


def _ca_builder(name: str, public: pki.PublicKey, issuer: x509.Name, now: float, days: int) -> x509.CertificateBuilder:
    return (x509.CertificateBuilder().subject_name(_name(name)).issuer_name(issuer).public_key(public)
            .serial_number(x509.random_serial_number()).not_valid_before(_utc(now - 300))
            .not_valid_after(_utc(now + days * 86400))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None if issuer == _name(name) else 0),
                           critical=True)
            .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False))


def verify_chain(cert: x509.Certificate, chain: list[x509.Certificate], root: x509.Certificate,
                 when: float | None = None) -> None:
    """Check that `cert` chains to `root` through `chain` (signatures and validity): PkiError if not."""
    from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

    at = _utc(when if when is not None else time.time())
    try:
        verifier = PolicyBuilder().store(Store([root])).time(at).build_client_verifier()
        verifier.verify(cert, [c for c in chain if c != root])
    except VerificationError as err:
        raise PkiError(f"certificate does not chain to the city CA: {err}") from err
