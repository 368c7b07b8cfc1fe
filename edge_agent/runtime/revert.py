"""Crash-loop revert of a remote config: the overlay a hub applied is set aside after N failed starts.

A remote config can validate and even apply live, yet keep the agent from starting (a port taken after a
reboot, a role that dies at once). Each start with an overlay present counts one try in a file beside it;
a start that ran healthy for a while, or stopped cleanly, clears it. Once `limit` starts in a row did not
get that far, `before_start` renames the overlay to `*.rejected` and the agent starts on the technician's
file alone. Files are written 0600. Raises OSError only when the config directory is unwritable.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

logger = logging.getLogger(__name__)


def _starts(overlay: Path) -> Path:
    return overlay.with_name(overlay.name + ".starts")


def before_start(overlay: Path, limit: int) -> bool:
    """Count this start; True when the overlay was set aside (it failed `limit` starts in a row)."""
    starts = _starts(overlay)
    if not overlay.exists():
        starts.unlink(missing_ok=True)
        return False
    try:
        tries = int(starts.read_text() or 0)
    except (FileNotFoundError, ValueError):
        tries = 0
    if tries >= limit:
        rejected = overlay.with_name(overlay.name + ".rejected")
        os.replace(overlay, rejected)
        starts.unlink(missing_ok=True)
        logger.error("remote config %s failed %d starts in a row: set aside as %s, starting on the local file",
                     overlay, tries, rejected)
        return True
    fd = os.open(starts, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, str(tries + 1).encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    return False


def started_well(overlay: Path) -> None:
    """The agent ran healthy (or stopped cleanly) with this overlay: its tries start again from zero."""
    _starts(overlay).unlink(missing_ok=True)
