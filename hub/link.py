"""How the hub reaches its broker and database: TLS, identity and secrets that never travel in argv.

What is guaranteed:
- a password is read from a file (first line) or an environment variable, never from the command line;
- a database URL that carries a password is refused (`ps` would show it): give it by file or environment;
- `mqtts://` turns TLS on; a client certificate and key give the hub its broker identity (`_hub`).

Raises ValueError with a message saying what to do.
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import paho.mqtt.client as mqtt

MQTT_PASSWORD_ENV = "VENUE_HUB_MQTT_PASSWORD"  # nosec B105: a variable name, not a password
DB_PASSWORD_ENV = "VENUE_HUB_DB_PASSWORD"  # nosec B105: a variable name, not a password


@dataclass(frozen=True)
class BrokerLink:
    """Where the broker is and how the hub proves who it is."""

    host: str = "127.0.0.1"
    port: int = 1883
    tls: bool = False
    ca: Path | None = None  # CA bundle the broker's certificate must chain to (None: the system's)
    cert: Path | None = None  # client certificate chain (mutual TLS)
    key: Path | None = None
    username: str | None = None
    password: str | None = None

    def __repr__(self) -> str:  # never print the password
        return f"BrokerLink({self.host}:{self.port}, tls={self.tls}, user={self.username!r})"

    def apply(self, client: mqtt.Client) -> None:
        """Configure TLS and credentials on a paho client (before connect)."""
        if self.tls:
            client.tls_set(ca_certs=str(self.ca) if self.ca else None, certfile=str(self.cert) if self.cert else None,
                           keyfile=str(self.key) if self.key else None, cert_reqs=ssl.CERT_REQUIRED,
                           tls_version=ssl.PROTOCOL_TLS_CLIENT)
        if self.username is not None:
            client.username_pw_set(self.username, self.password)


def read_secret(file: str | None, env: str) -> str | None:
    """The secret in `file` (first line), else in the environment variable `env`, else None."""
    if file:
        text = Path(file).read_text().splitlines()
        if not text or not text[0]:
            raise ValueError(f"{file} is empty: write the password on its first line")
        return text[0]
    return os.environ.get(env) or None


def broker_link(url: str, ca: str | None = None, cert: str | None = None, key: str | None = None,
                username: str | None = None, password_file: str | None = None) -> BrokerLink:
    """A BrokerLink from `mqtt://host:port` or `mqtts://host:port` (no credentials in the URL)."""
    u = urlsplit(url)
    if u.scheme not in ("mqtt", "mqtts"):
        raise ValueError(f"broker URL must be mqtt:// or mqtts://, got {u.scheme!r}")
    if u.password is not None or u.username is not None:
        raise ValueError("no credentials in the broker URL (ps shows them): use --username and "
                         f"--password-file or ${MQTT_PASSWORD_ENV}")
    tls = u.scheme == "mqtts"
    if (cert is None) != (key is None):
        raise ValueError("--cert and --key go together")
    if cert and not tls:
        raise ValueError("a client certificate needs TLS: use an mqtts:// broker URL")
    password = read_secret(password_file, MQTT_PASSWORD_ENV)
    if password is not None and not tls:
        raise ValueError("refusing to send a password in clear: use an mqtts:// broker URL")
    return BrokerLink(u.hostname or "127.0.0.1", u.port or (8883 if tls else 1883), tls,
                      Path(ca) if ca else None, Path(cert) if cert else None, Path(key) if key else None,
                      username, password)


def db_url(url: str, password_file: str | None = None) -> str:
    """The database URL with its password added from a file or $VENUE_HUB_DB_PASSWORD (PostgreSQL only)."""
    if not url.startswith(("postgresql://", "postgres://")):
        return url
    u = urlsplit(url)
    if u.password is not None:
        raise ValueError("no password in --db (ps shows it): use --db-password-file, "
                         f"${DB_PASSWORD_ENV} or PGPASSWORD")
    password = read_secret(password_file, DB_PASSWORD_ENV)
    if password is None:
        return url
    user = quote(u.username or "", safe="")
    host = u.netloc.rpartition("@")[2]
    return urlunsplit((u.scheme, f"{user}:{quote(password, safe='')}@{host}", u.path, u.query, u.fragment))


def redact(url: str) -> str:
    """A URL safe to log: no password."""
    u = urlsplit(url)
    if u.password is None:
        return url
    return urlunsplit((u.scheme, f"{u.username}:***@{u.netloc.rpartition('@')[2]}", u.path, u.query, u.fragment))
