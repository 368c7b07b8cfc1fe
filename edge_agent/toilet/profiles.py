"""Sensor profiles: register maps as data (profiles.toml + config additions), decoded with one function."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class Register(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,40}$")
    function: Literal[2, 3, 4]
    address: int = Field(ge=0, le=0xFFFF)
    words: Literal[1, 2] = 1  # 2 = 32-bit value, high word first
    scale: float = 1.0
    signed: bool = False


class Profile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    description: str = ""
    baud: int = 9600
    parity: Literal["N", "E", "O"] = "N"
    default_address: int = Field(1, ge=1, le=247)
    registers: list[Register] = Field(min_length=1)


def builtin() -> dict[str, Profile]:
    doc = tomllib.loads((Path(__file__).with_name("profiles.toml")).read_text())
    return {name: Profile.model_validate(p) for name, p in doc.items()}


def load(extra: dict[str, Any] | None = None) -> dict[str, Profile]:
    """Built-in profiles, with config-supplied ones added or replacing them by name."""
    out = builtin()
    for name, p in (extra or {}).items():
        out[name] = p if isinstance(p, Profile) else Profile.model_validate(p)
    return out


def decode(reg: Register, words: list[int]) -> float:
    raw = words[0] if reg.words == 1 else (words[0] << 16) | words[1]
    bits = 16 * reg.words
    if reg.signed and raw >= 1 << (bits - 1):
        raw -= 1 << bits
    return round(raw * reg.scale, 6)
