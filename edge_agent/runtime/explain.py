"""Say in one line a newcomer understands which part of the agent gave up, why, and what to do about it.

Pure apart from reading the installed package's metadata (to name the extra that brings a missing package).
Never raises.
"""

from __future__ import annotations

import importlib.metadata
import re

from edge_agent.runtime.supervisor import Worker

DIST = "smart-venue-edge"
_EXTRA_REQ = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*).*;.*extra\s*==\s*['\"]([a-z0-9_-]+)['\"]")
PARTS = {"uplink": "the uplink to the broker", "maintenance": "the outbox maintenance",
         "commands": "the downlink command handler"}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def missing_package_hint(err: BaseException | None) -> str:
    """For an ImportError: which extra installs the missing package (as declared in pyproject.toml)."""
    if not isinstance(err, ImportError) or not err.name:
        return ""
    top = err.name.split(".")[0]
    try:
        reqs = importlib.metadata.requires(DIST) or []
    except importlib.metadata.PackageNotFoundError:
        reqs = []
    extras = sorted({m[2] for r in reqs if (m := _EXTRA_REQ.match(r)) and _norm(m[1]) == _norm(top)} - {"dev"})
    if extras:
        return (f"the Python package '{top}' is not installed; it comes with the '{extras[0]}' extra: "
                f"pip install -e '.[{extras[0]}]'")
    return f"the Python package '{top}' is not installed (is the extra for this part installed? see README, Set-up)"


def explain(worker: Worker, roles: dict[str, str], max_restarts: int, window_s: float) -> str:
    """'the vision role 'north-cam' stopped: it failed 6 times in 60 s (last: ModuleNotFoundError: ...) — ...'."""
    if worker.name.startswith("producer:"):
        name = worker.name.split(":", 1)[1]
        what = f"the {roles.get(name, 'unknown')} role '{name}'"
    else:
        what = PARTS.get(worker.name, f"worker '{worker.name}'")
    line = (f"{what} stopped: it failed {max_restarts + 1} times in {window_s:g} s "
            f"(last: {worker.last_error or 'unknown error'})")
    hint = missing_package_hint(worker.error)
    return f"{line} — {hint}" if hint else line
