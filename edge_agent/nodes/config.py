"""Config of the sensor-node relay (MicroPython nodes on the gateway's local broker): pydantic only."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from edge_agent.config.models import IDENT, RoleConfig


class NodesConfig(RoleConfig):
    """MicroPython sensor nodes (firmware/) publishing to the gateway's local broker: their readings are
    stored once each (by the node's own numbering) and confirmed back to the node."""

    type: Literal["nodes"] = Field(description="Producer plugin name.")
    name: str = Field("nodes", pattern=IDENT, description="Worker name.")
    host: str = Field("127.0.0.1", description="The local broker the nodes publish to.")
    port: int = Field(1883, ge=1, le=65535, description="Its port.")
    prefix: str = Field("svnode", pattern=IDENT, description="Topic prefix the nodes use.")
    username: str | None = Field(None, description="Local broker user.")
    password: str | None = Field(None, description="Local broker password.")
    classes: dict[str, Literal["transaction", "measurement"]] = Field(
        {"air": "measurement", "stall": "transaction"},
        description="Node record kind → outbox class (unlisted kinds are measurements).")
    config_timeout_s: float = Field(10, gt=0, description="How long node.config waits for the node's answer.")
