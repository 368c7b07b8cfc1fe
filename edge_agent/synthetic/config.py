"""Config of the synthetic gate (demo and fault-test traffic): pydantic only."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from edge_agent.config.models import IDENT, RoleConfig


class SyntheticProducerConfig(RoleConfig):
    """Emits a scenic-spot gate's traffic: passes, per-interval counts and occupancy."""

    type: Literal["synthetic"] = Field(description="Producer plugin name.")
    name: str = Field("synthetic", pattern=IDENT, description="Worker name in logs and metrics.")
    rate_per_s: float = Field(5, gt=0, le=100_000, description="Gate passes per second.")
    count_interval_s: float = Field(60, gt=0, description="Period of the per-interval count measurement.")
    limit: int | None = Field(None, ge=0, description="Stop after this many passes (None = forever).")
    journal: Path | None = Field(None, description="Append the id of every pass confirmed durable "
                                 "(fault tests compare it with the hub).")
    seed: int | None = Field(None, description="Random seed for reproducible runs.")
