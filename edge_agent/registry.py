"""The roles an agent can run, and the agent's whole config model built from them.

A role is a package edge_agent/<role>/ holding
    config.py   its config model: a RoleConfig subclass with `type: Literal["<role>"]`, pydantic only
    role.py     the role, built as Role(cfg, ctx) with commands() and run(stop) (edge_agent/core/ports.py)
and ONE line in ROLES below (README, "Add a role"). The `producers` union of AgentConfig, validate-config,
remote config and the agent's supervisor all follow from that line.

Config models are imported here, so they must stay light; a role's module is imported only when a config
uses it (cv2, onnxruntime, pymodbus, paho load then). Raises ValueError for a registry whose key is not its
model's `type`, and for a role type the registry does not have.
"""

from __future__ import annotations

import functools
import importlib
import operator
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import Field, create_model, model_validator

from edge_agent.config.loader import load
from edge_agent.config.models import (
    Base,
    CommandsConfig,
    DeviceConfig,
    MetricsConfig,
    MqttConfig,
    RoleConfig,
    StoreConfig,
    SyncConfig,
)
from edge_agent.core.ports import Context, Factory, Producer
from edge_agent.gate.config import GateRoleConfig
from edge_agent.kiosk.config import KioskConfig
from edge_agent.nodes.config import NodesConfig
from edge_agent.synthetic.config import SyntheticProducerConfig
from edge_agent.toilet.config import ToiletRoleConfig
from edge_agent.vision.config import VisionProducerConfig, check_shared_detectors


@dataclass(frozen=True)
class Role:
    """A registered role: its config model, and where its class is ("module:attribute", imported on use)."""

    config: type[RoleConfig]
    factory: str

    def load(self) -> Factory:
        module, _, attr = self.factory.partition(":")
        return typing.cast(Factory, getattr(importlib.import_module(module), attr))


# Explicit registry, one line per role: config `type` -> Role(config model, "module:class").
ROLES: dict[str, Role] = {
    "synthetic": Role(SyntheticProducerConfig, "edge_agent.synthetic.role:SyntheticGate"),
    "vision": Role(VisionProducerConfig, "edge_agent.vision.producer:VisionProducer"),
    "gate": Role(GateRoleConfig, "edge_agent.gate.role:GateRole"),
    "toilet": Role(ToiletRoleConfig, "edge_agent.toilet.role:ToiletRole"),
    "nodes": Role(NodesConfig, "edge_agent.nodes.role:NodesProducer"),
    "kiosk": Role(KioskConfig, "edge_agent.kiosk.role:KioskRole"),
}

PRODUCERS_HELP = "Roles this device runs (gate, toilet, camera, sensor nodes, ...): one table each, picked by `type`."


def producer_union(roles: Mapping[str, Role]) -> Any:
    """The discriminated union of the roles' config models (the type of one `producers` entry)."""
    configs = [r.config for r in roles.values()]
    if len(configs) == 1:
        return configs[0]
    return Annotated[functools.reduce(operator.or_, configs), Field(discriminator="type")]


if TYPE_CHECKING:
    ProducerConfig = RoleConfig
else:
    ProducerConfig = producer_union(ROLES)


class AgentConfig(Base):
    """The agent's config file: shared sections plus one table per role it runs."""

    device: DeviceConfig = Field(description="Who this device is.")
    store: StoreConfig = Field(StoreConfig(), description="The outbox.")
    mqtt: MqttConfig = Field(MqttConfig(), description="The broker connection.")
    sync: SyncConfig = Field(SyncConfig(), description="Batching, acks and pacing.")
    metrics: MetricsConfig = Field(MetricsConfig(), description="Prometheus endpoint.")
    commands: CommandsConfig = Field(CommandsConfig(), description="Signed downlink commands.")
    producers: list[ProducerConfig] = Field(default_factory=list, description=PRODUCERS_HELP)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Log level.")

    @model_validator(mode="after")
    def _unique_producers(self) -> AgentConfig:
        names = [p.name for p in self.producers]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"producer names must be unique; repeated: {sorted(dup)}")
        check_shared_detectors([p for p in self.producers if isinstance(p, VisionProducerConfig)])
        return self


class Registry:
    """A set of roles and the AgentConfig model that accepts exactly them."""

    def __init__(self, roles: Mapping[str, Role], config_model: type[AgentConfig] | None = None) -> None:
        for name, role in roles.items():
            tag = typing.get_args(role.config.model_fields["type"].annotation)
            if tag != (name,):
                raise ValueError(f"role {name!r}: its config model's type must be Literal[{name!r}], not {tag}")
        self.roles = dict(roles)
        if config_model is None:  # AgentConfig with `producers` accepting exactly these roles
            entries: Any = list.__class_getitem__(producer_union(roles))
            producers: Any = (entries, Field(default_factory=list, description=PRODUCERS_HELP))
            config_model = create_model("AgentConfig", __base__=AgentConfig, producers=producers)
        self.config_model: type[AgentConfig] = config_model

    def build(self, cfg: RoleConfig, ctx: Context) -> Producer:
        """The role for one `producers` entry (imports the role's module now)."""
        role = self.roles.get(cfg.type)
        if role is None:
            raise ValueError(f"unknown producer type {cfg.type!r}; known: {sorted(self.roles)}")
        return role.load()(cfg, ctx)

    def load_config(self, path: str | Path) -> AgentConfig:
        """Load and validate a .toml/.yaml agent config; ConfigError names every bad key with its line."""
        return load(path, self.config_model)


REGISTRY = Registry(ROLES, AgentConfig)
load_config = REGISTRY.load_config
