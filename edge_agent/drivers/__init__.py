"""Device drivers. Each takes a serial-like transport it did not open (`read(n)`, `write(b)`), so tests
hand it a pty or `loop://` with a simulator that speaks the real wire protocol.

Exceptions: FrameError (a malformed frame, counted and skipped by the stream parsers),
DeviceTimeout (no answer in time).
"""


class FrameError(ValueError):
    """A frame that does not follow the wire protocol."""


class DeviceTimeout(TimeoutError):
    """The device did not answer in time."""


def resync(buf: bytearray, marker: bytes) -> bool:
    """Drop bytes before the next `marker` in buf; True when buf now starts with it. With no marker,
    keep only a tail that could be the start of one (a frame split across reads)."""
    i = buf.find(marker)
    if i < 0:
        del buf[: max(0, len(buf) - len(marker) + 1)]
        return False
    del buf[:i]
    return True


def xor(data: bytes) -> int:
    """XOR of all bytes: the check byte of the ID-reader and display frames."""
    x = 0
    for b in data:
        x ^= b
    return x
