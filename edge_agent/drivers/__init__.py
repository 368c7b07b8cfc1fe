"""Device drivers. Each takes a serial-like transport it did not open (`read(n)`, `write(b)`), so tests
hand it a pty or `loop://` with a simulator that speaks the real wire protocol.

Exceptions: FrameError (a malformed frame, counted and skipped by the stream parsers),
DeviceTimeout (no answer in time).
"""


class FrameError(ValueError):
    """A frame that does not follow the wire protocol."""


class DeviceTimeout(TimeoutError):
    """The device did not answer in time."""
