"""Keys a remote config can never change: identity, broker link, trust anchors, secrets, storage places.

`locked_changes(old, new)` compares two config documents (model_dump(mode="json") form, or a merge of one
with a patch) and names every locked key `new` holds with another value, as a dotted path (keys `new`
leaves out take defaults: the agent compares the validated configs as well). Pure; raises nothing.
Producers are paired by name, so a patch cannot slip a locked key in by adding a role (a new role that
carries a ticket key or a state directory is itself a locked change).
"""

from __future__ import annotations

from typing import Any

LOCKED_SECTIONS = ("device", "mqtt", "commands")  # whole top-level sections
LOCKED_PATHS = ("store.path",)
# Wherever they appear (a role's own broker link, its trust anchors and secrets, where it keeps state)
LOCKED_NAMES = frozenset({
    "tls", "password_env", "password_file", "username", "host", "url",  # a role's own broker link
    "public_key", "hub_key", "hub_public_key",  # trust anchors: ticket keys, the hub's keys
    "allowlist_key", "allowlist_key_env", "allowlist_key_file", "key_file", "key_source", "mifare_key_env",
    "api_key_env",  # secrets and where they come from
    "state_dir", "path", "model_dir", "wlt_library",  # where state lives, what code and models are loaded
})
MISSING = object()


def locked_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    out = [s for s in LOCKED_SECTIONS if old.get(s, MISSING) != new.get(s, MISSING)]
    for path in LOCKED_PATHS:
        head, _, tail = path.partition(".")
        if _get(old, head, tail) != _get(new, head, tail):
            out.append(path)
    out += _walk(old.get("producers", []), new.get("producers", []), "producers")
    return out


def _get(doc: dict[str, Any], head: str, tail: str) -> Any:
    sect = doc.get(head, MISSING)
    return sect.get(tail, MISSING) if isinstance(sect, dict) else MISSING


def _walk(old: Any, new: Any, path: str) -> list[str]:
    if isinstance(new, dict):
        o = old if isinstance(old, dict) else {}
        out = []
        for key in sorted(new):  # a key left out takes its default: compare validated configs to see those
            if key in LOCKED_NAMES and o.get(key, MISSING) != new[key]:
                out.append(f"{path}.{key}")
            elif key not in LOCKED_NAMES:
                out += _walk(o.get(key, MISSING), new[key], f"{path}.{key}")
        return out
    if isinstance(new, list):
        ol: list[Any] = old if isinstance(old, list) else []
        by_name = {x.get("name"): x for x in ol if isinstance(x, dict) and "name" in x}
        out = []
        for i, item in enumerate(new):
            if isinstance(item, dict) and "name" in item:
                out += _walk(by_name.get(item["name"], MISSING), item, f"{path}[{item['name']}]")
            else:
                out += _walk(ol[i] if i < len(ol) else MISSING, item, f"{path}[{i}]")
        return out
    return []
