"""A small MQTT 3.1.1 client for MicroPython (written for this project; no struct, no asyncio).

QoS 0 and 1 publish, QoS 1 subscribe, a last will, keepalive pings and a non-blocking poll(). The
caller owns reconnection: any socket error or protocol violation raises MQTTError and the client is
then dead. Every blocking call is bounded by `timeout_ms`, which must stay below the watchdog's.
"""

import select
import socket
import time


class MQTTError(Exception):
    pass


def _u16(n):
    return bytes(((n >> 8) & 0xFF, n & 0xFF))


def _str(s):
    if isinstance(s, str):
        s = s.encode()
    return _u16(len(s)) + s


def _no_message(topic, payload, retained):
    pass


def _no_puback(pid):
    pass


def _remaining(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | 0x80 if n else b)
        if not n:
            return bytes(out)


class Client:
    def __init__(self, client_id, host, port=1883, keepalive=30, user=None, password=None, timeout_ms=5000,
                 max_packet=8192, ssl_ctx=None):
        self.client_id = client_id
        self.host, self.port = host, port
        self.keepalive = keepalive
        self.user, self.password = user, password
        self.timeout_ms = timeout_ms
        self.max_packet = max_packet  # a bigger packet would not fit an ESP32's heap: the link is dropped
        self.ssl_ctx = ssl_ctx  # an ssl.SSLContext that checks the broker's certificate, or None
        self.sock = None
        self.poller = None
        self.will = None
        self.pid = 0
        self.last_tx = 0
        self.last_rx = 0
        self._ping_at = None
        self._suback = 0
        self._granted = 0x80
        self.on_message = _no_message  # (topic: str, payload: bytes, retained: bool) -> None
        self.on_puback = _no_puback  # (pid: int) -> None

    def set_will(self, topic, payload, retain=True, qos=1):
        self.will = (topic, payload, retain, qos)

    # ------------------------------------------------------------------ wire

    def _conn(self):
        if self.sock is None:
            raise MQTTError("not connected")
        return self.sock

    def _send(self, data):
        sock = self._conn()
        try:
            n = 0
            mv = memoryview(data)
            while n < len(data):
                w = sock.write(mv[n:])
                if not w:
                    raise MQTTError("socket closed on write")
                n += w
        except OSError as err:
            raise MQTTError("write: %s" % err) from err
        self.last_tx = time.ticks_ms()

    def _read(self, n):
        sock = self._conn()
        buf = bytearray()
        deadline = time.ticks_add(time.ticks_ms(), self.timeout_ms)
        while len(buf) < n:
            if time.ticks_diff(deadline, time.ticks_ms()) <= 0:
                raise MQTTError("read timeout")
            try:
                chunk = sock.read(n - len(buf))
            except OSError as err:
                if err.args and err.args[0] in (11, 110, 116):  # EAGAIN, ETIMEDOUT (lwIP 116)
                    continue
                raise MQTTError("read: %s" % err) from err
            if chunk is None:
                continue
            if not chunk:
                raise MQTTError("connection closed by broker")
            buf.extend(chunk)
        return bytes(buf)

    def _packet(self):
        """One whole packet: (type, flags, body)."""
        head = self._read(1)[0]
        n, shift = 0, 0
        while True:
            b = self._read(1)[0]
            n |= (b & 0x7F) << shift
            if not b & 0x80:
                break
            shift += 7
            if shift > 21:
                raise MQTTError("malformed remaining length")
        if n > self.max_packet:
            raise MQTTError("packet of %d bytes exceeds %d" % (n, self.max_packet))
        body = self._read(n) if n else b""
        self.last_rx = time.ticks_ms()
        return head >> 4, head & 0x0F, body

    def _next_pid(self):
        self.pid = self.pid % 65535 + 1
        return self.pid

    # ------------------------------------------------------------------ API

    def connect(self, clean=True):
        """Open the connection; returns True when the broker kept a session."""
        addr = socket.getaddrinfo(self.host, self.port, 0, socket.SOCK_STREAM)[0][-1]
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._ping_at = None
        self.last_rx = self.last_tx = time.ticks_ms()
        self.sock.settimeout(self.timeout_ms / 1000)
        try:
            self.sock.connect(addr)
            if self.ssl_ctx is not None:
                self.sock = self.ssl_ctx.wrap_socket(self.sock, server_hostname=self.host)
        except (OSError, ValueError) as err:  # ValueError: mbedTLS refused the broker's certificate
            self.close()
            raise MQTTError("connect: %s" % err) from err
        self.poller = select.poll()
        self.poller.register(self.sock, select.POLLIN)
        flags = 0x02 if clean else 0
        payload = _str(self.client_id)
        if self.will:
            topic, msg, retain, qos = self.will
            flags |= 0x04 | (qos << 3) | (0x20 if retain else 0)
            payload += _str(topic) + _str(msg)
        if self.user is not None:
            flags |= 0x80
            payload += _str(self.user)
            if self.password is not None:
                flags |= 0x40
                payload += _str(self.password)
        var = _str("MQTT") + bytes((4, flags)) + _u16(self.keepalive)
        body = var + payload
        self._send(b"\x10" + _remaining(len(body)) + body)
        kind, _, body = self._packet()
        if kind != 2 or len(body) != 2:
            self.close()
            raise MQTTError("expected CONNACK")
        if body[1]:
            self.close()
            raise MQTTError("connection refused, code %d" % body[1])
        return bool(body[0] & 1)

    def publish(self, topic, payload, qos=0, retain=False):
        """Send; for QoS 1 returns the packet id whose PUBACK will reach on_puback."""
        if isinstance(payload, str):
            payload = payload.encode()
        pid = 0
        var = _str(topic)
        if qos:
            pid = self._next_pid()
            var += _u16(pid)
        head = 0x30 | (qos << 1) | (1 if retain else 0)
        self._send(bytes((head,)) + _remaining(len(var) + len(payload)) + var + payload)
        return pid

    def subscribe(self, topic, qos=1):
        pid = self._next_pid()
        body = _u16(pid) + _str(topic) + bytes((qos,))
        self._send(b"\x82" + _remaining(len(body)) + body)
        deadline = time.ticks_add(time.ticks_ms(), self.timeout_ms)
        while time.ticks_diff(deadline, time.ticks_ms()) > 0:
            kind = self._handle()
            if kind == 9 and self._suback == pid:
                if self._granted == 0x80:
                    raise MQTTError("subscription to %s refused" % topic)
                return
        raise MQTTError("no SUBACK")

    def poll(self, timeout_ms=0):
        """Handle whatever has arrived (waiting up to timeout_ms for the first packet); keep alive."""
        now, half = time.ticks_ms(), self.keepalive * 500
        if self._ping_at is None:
            if time.ticks_diff(now, self.last_tx) >= half or time.ticks_diff(now, self.last_rx) >= half:
                self._send(b"\xc0\x00")  # PINGREQ when either direction has been quiet half a keepalive
                self._ping_at = now
        elif time.ticks_diff(now, self._ping_at) > self.keepalive * 1000:
            raise MQTTError("no PINGRESP within the keepalive")
        wait = timeout_ms
        while self._readable(wait):
            self._handle()
            wait = 0

    def _readable(self, timeout_ms):
        if self.poller is None:
            return False
        for _, ev in self.poller.poll(timeout_ms):
            if ev & (select.POLLHUP | select.POLLERR):
                raise MQTTError("socket hung up")
            return True
        return False

    def _handle(self):
        kind, flags, body = self._packet()
        if kind == 3:  # PUBLISH
            qos = (flags >> 1) & 3
            if qos == 3 or len(body) < 2:
                raise MQTTError("malformed PUBLISH")
            n = (body[0] << 8) | body[1]
            pos = 2 + n + (2 if qos else 0)
            if pos > len(body):
                raise MQTTError("malformed PUBLISH")
            try:
                topic = body[2:2 + n].decode()
            except UnicodeError:
                raise MQTTError("topic is not UTF-8") from None
            pid = (body[pos - 2] << 8) | body[pos - 1] if qos else 0
            if qos == 2:
                raise MQTTError("QoS 2 not supported")
            self.on_message(topic, body[pos:], bool(flags & 1))
            if qos == 1:
                self._send(b"\x40\x02" + _u16(pid))  # PUBACK after the handler ran
        elif kind == 4:  # PUBACK
            if len(body) != 2:
                raise MQTTError("malformed PUBACK")
            self.on_puback((body[0] << 8) | body[1])
        elif kind == 9:  # SUBACK
            if len(body) < 3:
                raise MQTTError("malformed SUBACK")
            self._suback = (body[0] << 8) | body[1]
            self._granted = body[2]
        elif kind == 13:  # PINGRESP
            self._ping_at = None
        else:
            raise MQTTError("unexpected packet type %d" % kind)
        return kind

    def disconnect(self):
        try:
            self._send(b"\xe0\x00")
        except MQTTError:
            pass
        self.close()

    def close(self):
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
        self.sock = None
        self.poller = None
