"""Versioned topic scheme (docs/protocol.md)."""

from __future__ import annotations

from dataclasses import dataclass

PREFIX = "venue/v1"


@dataclass(frozen=True)
class Topics:
    """All topics of one device."""

    site: str
    device: str
    prefix: str = PREFIX

    @property
    def base(self) -> str:
        return f"{self.prefix}/{self.site}/{self.device}"

    def up(self, stream: str) -> str:
        return f"{self.base}/up/{stream}"

    @property
    def ack(self) -> str:
        return f"{self.base}/ack"

    @property
    def state(self) -> str:
        return f"{self.base}/state"

    @property
    def cmd(self) -> str:
        return f"{self.base}/cmd/+"

    @property
    def result(self) -> str:
        return f"{self.base}/result"

    @property
    def hub_online(self) -> str:
        return hub_online(self.prefix)


def hub_online(prefix: str = PREFIX) -> str:
    """Retained by the hub each time it (re)subscribes without its old session: devices re-send at once."""
    return f"{prefix}/_hub/online"


def parse(topic: str, prefix: str = PREFIX) -> tuple[str, str, str, str] | None:
    """Split `{prefix}/{site}/{device}/{kind}[/{rest}]` into (site, device, kind, rest) or None."""
    if not topic.startswith(prefix + "/"):
        return None
    parts = topic[len(prefix) + 1:].split("/", 3)
    if len(parts) < 3 or not all(parts[:3]):
        return None
    return parts[0], parts[1], parts[2], parts[3] if len(parts) > 3 else ""
