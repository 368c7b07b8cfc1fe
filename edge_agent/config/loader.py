"""Read TOML or YAML configuration and explain validation errors with key path, line and value.

Generic over the model: edge_agent.registry.load_config(path) reads the agent's config with it. Raises
ConfigError (a ValueError) listing every problem found, each with key path, line and value.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class ConfigIssue:
    path: str
    line: int | None
    value: Any
    message: str

    def __str__(self) -> str:
        where = f"line {self.line}" if self.line else "line ?"
        return f"{self.path or '<root>'} ({where}): {self.message} [value: {self.value!r}]"


class ConfigError(ValueError):
    """Configuration that cannot be used; `issues` lists every problem found."""

    def __init__(self, source: str, issues: list[ConfigIssue]) -> None:
        self.source = source
        self.issues = issues
        super().__init__(f"{source}: " + "; ".join(str(i) for i in issues))


def _yaml_lines(text: str) -> dict[tuple[str, ...], int]:
    """Map key paths to 1-based line numbers using YAML node marks."""
    out: dict[tuple[str, ...], int] = {}

    def walk(node: Any, path: tuple[str, ...]) -> None:
        out.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                out[path + (str(k.value),)] = k.start_mark.line + 1
                walk(v, path + (str(k.value),))
        elif isinstance(node, yaml.SequenceNode):
            for i, v in enumerate(node.value):
                walk(v, path + (str(i),))

    root = yaml.compose(text)
    if root is not None:
        walk(root, ())
    return out


_TOML_TABLE = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_.\-\"' ]+?)\s*\]\]?\s*(#.*)?$")
_TOML_KEY = re.compile(r"^\s*([A-Za-z0-9_\-\"']+)\s*=")


def _toml_lines(text: str) -> dict[tuple[str, ...], int]:
    """Map key paths to line numbers for the TOML subset configs use (tables, arrays of tables)."""
    out: dict[tuple[str, ...], int] = {}
    table: tuple[str, ...] = ()
    counts: dict[tuple[str, ...], int] = {}
    for n, line in enumerate(text.splitlines(), 1):
        m = _TOML_TABLE.match(line)
        if m:
            parts = tuple(p.strip().strip("\"'") for p in m.group(2).split("."))
            if m.group(1) == "[[":
                idx = counts.get(parts, 0)
                counts[parts] = idx + 1
                parts = parts + (str(idx),)
            table = parts
            out.setdefault(table, n)
            continue
        k = _TOML_KEY.match(line)
        if k:
            out.setdefault(table + (k.group(1).strip("\"'"),), n)
    return out


def parse_text(text: str, fmt: str) -> tuple[dict[str, Any], dict[tuple[str, ...], int]]:
    """Parse TOML or YAML text into a dict plus a key-path → line map."""
    if fmt == "toml":
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as err:
            raise ConfigError("config", [ConfigIssue("", None, None, f"invalid TOML: {err}")]) from err
        return data, _toml_lines(text)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        line = getattr(getattr(err, "problem_mark", None), "line", None)
        raise ConfigError("config", [ConfigIssue("", None if line is None else line + 1, None,
                                                 f"invalid YAML: {err}")]) from err
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError("config", [ConfigIssue("", 1, type(data).__name__, "top level must be a mapping")])
    return data, _yaml_lines(text)


def _line_of(loc: tuple[str, ...], lines: dict[tuple[str, ...], int]) -> int | None:
    """Line of the deepest key of loc in the document (a union tag inside loc is skipped)."""
    for i in range(len(loc), -1, -1):
        head = loc[:i]
        for cand in [head] + [head[:j] + head[j + 1:] for j in range(len(head))]:
            if cand in lines:
                return lines[cand]
    return None


def validate(model: type[M], data: dict[str, Any], lines: dict[tuple[str, ...], int], source: str) -> M:
    """data as `model`, or ConfigError naming every bad key with its line in the document."""
    try:
        return model.model_validate(data)
    except ValidationError as err:
        issues = []
        for e in err.errors():
            loc = tuple(str(p) for p in e["loc"])
            # Discriminated unions add the tag to the location; drop parts the document lacks.
            value = e.get("input") if e["type"] != "missing" else None
            issues.append(ConfigIssue(".".join(loc), _line_of(loc, lines), value, e["msg"]))
        raise ConfigError(source, issues) from None


def load(path: str | Path, model: type[M]) -> M:
    """Load a .toml, .yaml or .yml file and validate it as `model`; raise ConfigError naming every bad key."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(str(p), [ConfigIssue("", None, None, f"cannot read: {err}")]) from err
    fmt = "toml" if p.suffix == ".toml" else "yaml" if p.suffix in (".yaml", ".yml") else ""
    if not fmt:
        raise ConfigError(str(p), [ConfigIssue("", None, p.suffix, "config must be .toml, .yaml or .yml")])
    try:
        data, lines = parse_text(text, fmt)
    except ConfigError as err:
        raise ConfigError(str(p), err.issues) from None
    return validate(model, data, lines, str(p))
