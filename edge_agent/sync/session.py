"""One MQTT session: the only place the agent (and the hub, and provisioning) builds a paho client.

What it guarantees:
- Settings come from one typed model (config.models.MqttConfig): url, client id, user, password from an
  environment variable or a file (never argv, never the config file), TLS and mutual TLS, MQTT v5 with a
  fallback to 3.1.1 when the broker refuses v5, keepalive.
- State is an explicit transition (SessionState): CONNECTING, then ONLINE only after a CONNACK that says
  success *and* the SUBACK of the subscriptions; a refusal, a socket error or a lost link is OFFLINE with
  `last_error` (and `refusal` when the broker said no); stop() is CLOSED. Nothing marks itself online
  after a refused connect.
- The last will is registered at every connect; the birth message (built fresh by a callable, so it carries
  the current time/epoch) is published retained once subscribed; stop() publishes the goodbye and waits up
  to 2 s for its PUBACK.
- Reconnects wait a capped, jittered backoff (core.backoff.Backoff), reset after a successful connect.

Threads: one network thread (start()) owns the socket and runs paho's loop. paho callbacks only enqueue;
message handlers, on_online, publish failures and jobs given to post() all run on that thread *outside*
paho's callbacks, so they may take locks that a publishing thread holds (paho holds its own mutexes while
calling back, and publish() takes them too). publish() may be called from any thread.

Users: the uplink (long-lived, start()/stop()), the nodes gateway (3.1.1 on the local broker), `doctor` and
selftest (probe()), provisioning's one-question calls (connect_once() + loop_once()). A hub worker would use
subscriptions=[("$share/hub/venue/v1/+/+/up/+", 1), ...], clean_start=False, session_expiry_s=300,
max_inflight=1000, on_online=<announce hub online> (it runs once the SUBACK is in), on_message=<enqueue>.

Nothing here raises into the caller except ValueError for bad settings (a password file that cannot be
read, a TLS file missing): connection faults become state, never exceptions.
"""

from __future__ import annotations

import enum
import logging
import os
import queue
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge_agent.config.models import MqttConfig
from edge_agent.core.backoff import Backoff

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 10.0
V5_UNSUPPORTED = (0x84, 0x01)  # v5 "unsupported protocol version"; 3.1.1 "unacceptable protocol version"


class SessionState(str, enum.Enum):
    """Broker connection state; every change is logged once."""

    CONNECTING = "connecting"
    ONLINE = "online"
    OFFLINE = "offline"
    CLOSED = "closed"


@dataclass(frozen=True)
class Message:
    """An application message: birth, last will, goodbye, or anything published."""

    topic: str
    payload: bytes | str
    qos: int = 1
    retain: bool = False


def read_password(cfg: MqttConfig) -> str | None:
    """The broker password from `password_file` (first line) or the `password_env` variable; None if unset.

    Raises ValueError when a named file cannot be read or a named variable is missing: a device that would
    log in without its password is misconfigured, not offline."""
    if cfg.password_file is not None:
        try:
            lines = Path(cfg.password_file).read_text().splitlines()
        except OSError as err:
            raise ValueError(f"mqtt.password_file {cfg.password_file}: {err.strerror or err}") from err
        return lines[0] if lines else ""
    if cfg.password_env:
        value = os.environ.get(cfg.password_env)
        if value is None:
            raise ValueError(f"mqtt.password_env: environment variable {cfg.password_env} is not set")
        return value
    return None


def configure(client: mqtt.Client, cfg: MqttConfig, password: str | None = None) -> None:
    """Credentials and TLS (server-authenticated, or mutual with tls.cert/tls.key) from the settings."""
    if cfg.username:
        client.username_pw_set(cfg.username, password if password is not None else read_password(cfg))
    if cfg.secure or cfg.tls:
        tls = cfg.tls
        for name in ("ca", "cert", "key"):
            path = getattr(tls, name) if tls else None
            if path is not None and not Path(path).is_file():
                raise ValueError(f"mqtt.tls.{name}: no such file {path}")
        client.tls_set(ca_certs=str(tls.ca) if tls and tls.ca else None,
                       certfile=str(tls.cert) if tls and tls.cert else None,
                       keyfile=str(tls.key) if tls and tls.key else None,
                       cert_reqs=ssl.CERT_REQUIRED)


class MqttSession:
    """One client id's connection to one broker, kept up until stop()."""

    def __init__(
        self,
        cfg: MqttConfig,
        client_id: str,
        *,
        subscriptions: list[tuple[str, int]] | None = None,
        on_message: Callable[[str, bytes, Any], None] | None = None,
        on_online: Callable[[], object] | None = None,
        on_publish_failed: Callable[[int, str], None] | None = None,
        will: Message | None = None,
        birth: Callable[[], Message] | None = None,
        goodbye: Callable[[], Message] | None = None,
        backoff: Backoff | None = None,
        max_inflight: int = 20,
        clean_start: bool = True,
        session_expiry_s: int = 0,
        password: str | None = None,
        name: str = "mqtt-net",
    ) -> None:
        self.cfg, self.client_id, self.name = cfg, client_id, name
        self.subscriptions = list(subscriptions or [])
        self.on_message, self.on_online, self.on_publish_failed = on_message, on_online, on_publish_failed
        self.will, self.birth, self.goodbye = will, birth, goodbye
        self.backoff = backoff or Backoff(1, 60)
        self.max_inflight, self.clean_start, self.session_expiry_s = max_inflight, clean_start, session_expiry_s
        self._password = password if password is not None else read_password(cfg)
        self.protocol = mqtt.MQTTv5 if cfg.protocol == "5" else mqtt.MQTTv311
        self.state = SessionState.OFFLINE
        self.last_error: str | None = None
        self.refusal: str | None = None  # the broker's reason when it refused the last CONNECT
        self.session_present = False
        self.connects = 0
        self.refusals = 0
        self._events: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.client = self._make_client()

    # ---------------------------------------------------------------- client

    def _make_client(self) -> mqtt.Client:
        kw: dict[str, Any] = {} if self.protocol == mqtt.MQTTv5 else {"clean_session": self.clean_start}
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=self.protocol,
                        reconnect_on_failure=False, **kw)
        c.max_inflight_messages_set(self.max_inflight)
        c.max_queued_messages_set(0)
        if self.will is not None:
            c.will_set(self.will.topic, self.will.payload, qos=self.will.qos, retain=self.will.retain)
        try:
            configure(c, self.cfg, self._password)
        except ValueError:
            _discard(c)
            raise
        # Events of a client already replaced (its late DISCONNECT) must not end the new connection.
        c.on_connect = lambda cl, u, flags, rc, p: self._put(cl, "connack", (rc, flags))
        c.on_disconnect = lambda cl, u, flags, rc, p: self._put(cl, "disconnect", rc)
        c.on_subscribe = lambda cl, u, mid, codes, p: self._put(cl, "suback", (mid, codes))
        c.on_publish = self._paho_publish
        c.on_message = lambda cl, u, m: self._events.put(("message", (m.topic, bytes(m.payload), m.properties)))
        return c

    def _put(self, client: mqtt.Client, kind: str, arg: Any) -> None:
        if client is self.client:
            self._events.put((kind, arg))

    def _paho_publish(self, client: mqtt.Client, userdata: Any, mid: int, rc: Any, props: Any) -> None:
        if rc is not None and getattr(rc, "is_failure", False):  # v5: a refused PUBACK still "completes"
            self._events.put(("puback_fail", (mid, str(rc))))

    def _rebuild(self) -> None:
        old, self.client = self.client, self._make_client()
        _discard(old)
        # What the old connection said (its CONNACK, its DISCONNECT) must not decide the new one's fate.
        keep = []
        while True:
            try:
                ev = self._events.get_nowait()
            except queue.Empty:
                break
            if ev[0] not in ("connack", "disconnect", "suback"):
                keep.append(ev)
        for ev in keep:
            self._events.put(ev)

    def _set_state(self, state: SessionState, why: str | None = None) -> None:
        if why is not None and state is not SessionState.ONLINE:
            self.last_error = why
        if state is not self.state:
            logger.info("%s %s:%d %s -> %s%s", self.client_id, self.cfg.host, self.cfg.port, self.state.value,
                        state.value, f" ({why})" if why else "")
            self.state = state

    # ---------------------------------------------------------------- one connection

    def connect_once(self, timeout: float = CONNECT_TIMEOUT_S) -> bool:
        """One synchronous attempt: CONNECT, CONNACK, SUBSCRIBE, SUBACK, birth. True when ONLINE."""
        for _ in range(2):  # a second try only after falling back from v5 to 3.1.1
            result = self._attempt(timeout)
            if result != "fallback":
                return result == "online"
        return False

    def _attempt(self, timeout: float) -> str:
        self._set_state(SessionState.CONNECTING)
        try:
            if self.protocol == mqtt.MQTTv5:
                props = Properties(PacketTypes.CONNECT)
                props.SessionExpiryInterval = self.session_expiry_s
                self.client.connect(self.cfg.host, self.cfg.port, keepalive=self.cfg.keepalive_s,
                                    clean_start=self.clean_start, properties=props)
            else:
                self.client.connect(self.cfg.host, self.cfg.port, keepalive=self.cfg.keepalive_s)
        except (OSError, ssl.SSLError, ValueError) as err:
            self._set_state(SessionState.OFFLINE, f"cannot connect to {self.cfg.host}:{self.cfg.port}: {err}")
            return "failed"
        deadline = time.monotonic() + timeout
        later: list[tuple[str, Any]] = []  # messages, jobs and PUBACK failures: handled once online
        try:
            return self._handshake(deadline, later)
        finally:
            for ev in later:
                self._events.put(ev)

    def _handshake(self, deadline: float, later: list[tuple[str, Any]]) -> str:
        pending: int | None = None
        while time.monotonic() < deadline and not self._stop.is_set():
            self.client.loop(timeout=0.05)
            try:
                kind, arg = self._events.get_nowait()
            except queue.Empty:
                continue
            if kind == "connack":
                rc, flags = arg
                if rc.is_failure:
                    return self._refused(rc)
                self.refusal = None
                self.session_present = bool(getattr(flags, "session_present", False))
                if not self.subscriptions:
                    break
                _, pending = self.client.subscribe(self.subscriptions)
            elif kind == "suback" and arg[0] == pending:
                bad = [t for (t, _), c in zip(self.subscriptions, arg[1], strict=False) if c.is_failure]
                if bad:  # an ACL that denies a topic: say so, the rest of the session still works
                    logger.warning("%s: broker refused subscriptions %s", self.client_id, bad)
                    self.last_error = f"subscription refused: {', '.join(bad)}"
                break
            elif kind == "disconnect":
                self._set_state(SessionState.OFFLINE, f"disconnected during connect: {arg}")
                return "failed"
            elif kind in ("message", "job", "puback_fail"):
                later.append((kind, arg))
        else:
            self._set_state(SessionState.OFFLINE, "no CONNACK/SUBACK in time" if not self._stop.is_set()
                            else "stopped while connecting")
            return "failed"
        self._online()
        return "online"

    def _refused(self, rc: Any) -> str:
        self.refusals += 1
        self.refusal = str(rc)
        if self.protocol == mqtt.MQTTv5 and rc.value in V5_UNSUPPORTED:
            logger.warning("%s: broker refused MQTT v5 (%s): falling back to 3.1.1", self.client_id, rc)
            self.protocol = mqtt.MQTTv311
            self._rebuild()
            return "fallback"
        self._set_state(SessionState.OFFLINE, f"refused: {rc}")
        return "failed"

    def _online(self) -> None:
        self.connects += 1
        self.backoff.reset()
        if self.birth is not None:
            b = self.birth()
            self.client.publish(b.topic, b.payload, qos=b.qos, retain=b.retain)
        if self.on_online is not None:  # before ONLINE: users that wait for ONLINE see its effects
            self._guard(self.on_online)
        self._set_state(SessionState.ONLINE)

    def loop_once(self, timeout: float = 0.05) -> bool:
        """Run paho's loop once and the queued handlers; False when the connection is gone."""
        rc = self.client.loop(timeout=timeout)
        alive = self._drain() and rc == mqtt.MQTT_ERR_SUCCESS
        if not alive and self.state is SessionState.ONLINE:
            self._set_state(SessionState.OFFLINE, "connection lost" if rc == mqtt.MQTT_ERR_SUCCESS
                            else f"connection lost: {mqtt.error_string(rc)}")
        return alive

    def _drain(self) -> bool:
        alive = True
        while True:
            try:
                kind, arg = self._events.get_nowait()
            except queue.Empty:
                return alive
            if kind == "disconnect":
                alive = False
            elif kind == "message":
                if self.on_message is not None:
                    self._guard(self.on_message, *arg)
            elif kind == "job":
                self._guard(arg)
            elif kind == "puback_fail" and self.on_publish_failed is not None:
                self._guard(self.on_publish_failed, *arg)

    def _guard(self, fn: Callable[..., Any], *args: Any) -> None:
        try:
            fn(*args)
        except Exception:  # a handler bug must not take the session down
            logger.exception("%s: handler failed", self.client_id)

    # ---------------------------------------------------------------- for users of the session

    def post(self, job: Callable[[], Any]) -> None:
        """Run `job` on the network thread, outside paho's callbacks (any thread may call this)."""
        self._events.put(("job", job))

    def publish(self, topic: str, payload: bytes | str, qos: int = 1, retain: bool = False,
                content_type: str | None = None, user: list[tuple[str, str]] | None = None) -> int | None:
        """Queue a message; its mid, or None when paho did not take it (offline, or its queue is full)."""
        props = None
        if self.protocol == mqtt.MQTTv5 and (content_type or user):
            props = Properties(PacketTypes.PUBLISH)
            if content_type:
                props.ContentType = content_type
            if user:
                props.UserProperty = user
        info = self.client.publish(topic, payload, qos=qos, retain=retain, properties=props)
        return info.mid if info.rc == mqtt.MQTT_ERR_SUCCESS else None

    @property
    def online(self) -> bool:
        return self.state is SessionState.ONLINE

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> None:
        """Connect and stay connected on a network thread until stop()."""
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            if self.connect_once():
                while not self._stop.is_set() and self.loop_once():
                    pass
                if self._stop.is_set():
                    break
            self._stop.wait(self.backoff.next())
            if not self._stop.is_set():
                self._rebuild()
        self.close()

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self, timeout: float = 5.0) -> None:
        """Say goodbye (when online), disconnect and end the network thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        else:
            self.close()

    def close(self) -> None:
        """Publish the goodbye, wait up to 2 s for its PUBACK, DISCONNECT; state CLOSED."""
        if self.state is SessionState.ONLINE:
            if self.goodbye is not None:
                g = self.goodbye()
                info = self.client.publish(g.topic, g.payload, qos=g.qos, retain=g.retain)
                deadline = time.monotonic() + 2
                while not info.is_published() and time.monotonic() < deadline:
                    self.client.loop(timeout=0.05)
            props = None
            if self.protocol == mqtt.MQTTv5 and self.session_expiry_s:
                props = Properties(PacketTypes.DISCONNECT)
                props.SessionExpiryInterval = 0  # leaving for good: drop our session (and shared-group seat)
            self.client.disconnect(properties=props)
            self.client.loop(timeout=0.1)
        _discard(self.client)
        self._set_state(SessionState.CLOSED)


def _discard(client: mqtt.Client) -> None:
    """Drop a client for good: paho leaves the socket of a refused or failed connect open."""
    try:
        client.disconnect()
    except Exception:  # noqa: BLE001  # nosec B110: never connected, or the socket is already gone
        pass
    # paho closes its socket and the wake-up socket pair that loop() made only in __del__, which for a client
    # caught in a reference cycle may run after the sockets' own finalizers (a ResourceWarning, an error here).
    reset = getattr(client, "_reset_sockets", None)
    try:
        if reset is not None:
            reset()
        elif client.socket() is not None:
            client.socket().close()  # type: ignore[union-attr]
    except OSError:
        pass


def probe(cfg: MqttConfig, client_id: str, timeout: float = 5.0) -> tuple[bool, str]:
    """Connect once with these settings (doctor, selftest): (accepted, what happened)."""
    try:
        s = MqttSession(cfg, client_id, backoff=Backoff(1, 1))
    except ValueError as err:
        return False, str(err)
    ok = s.connect_once(timeout)
    version = "v5" if s.protocol == mqtt.MQTTv5 else "3.1.1"
    detail = f"{cfg.host}:{cfg.port} accepted MQTT {version} connect" if ok else (s.last_error or "failed")
    s.close()
    return ok, detail
