"""Config of the sensor-node relay (MicroPython nodes on the gateway's local broker): pydantic only."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from edge_agent.config.models import IDENT, MqttConfig, RoleConfig


class NodesConfig(RoleConfig):
    """MicroPython sensor nodes (firmware/) publishing to the gateway's local broker: their readings are
    stored once each (by the node's own numbering) and confirmed back to the node."""

    type: Literal["nodes"] = Field(description="Producer plugin name.")
    name: str = Field("nodes", pattern=IDENT, description="Worker name.")
    host: str = Field("127.0.0.1", description="The local broker the nodes publish to.")
    port: int = Field(1883, ge=1, le=65535, description="Its port.")
    prefix: str = Field("svnode", pattern=IDENT, description="Topic prefix the nodes use.")
    username: str | None = Field(None, description="Local broker user.")
    password_env: str | None = Field(None, description="Environment variable that holds the local broker "
                                     "password (never the password itself in a config file).")
    password_file: Path | None = Field(None, description="File (0600) that holds the local broker password, e.g. "
                                       "the agent.secret `venue-provision broker nodes` writes.")

    classes: dict[str, Literal["transaction", "measurement"]] = Field(
        {"air": "measurement", "stall": "transaction"},
        description="Node record kind → outbox class (unlisted kinds are measurements).")
    config_timeout_s: float = Field(10, gt=0, description="How long node.config waits for the node's answer.")

    @model_validator(mode="after")
    def _one_secret(self) -> NodesConfig:
        if self.password_env is not None and self.password_file is not None:
            raise ValueError(f"producer {self.name}: give one of password_env, password_file")
        return self

    def mqtt(self) -> MqttConfig:
        """The local broker as session settings (the nodes speak MQTT 3.1.1)."""
        return MqttConfig(url=f"mqtt://{self.host}:{self.port}", protocol="3.1.1", keepalive_s=30,
                          username=self.username, password_env=self.password_env, password_file=self.password_file)
