"""Downlink commands: `{prefix}/{site}/{device}/cmd/{name}` with {"id": str, "args": {...}, "auth": {...}}.

`CommandRouter.handle` never raises: malformed payloads, unsigned/forged/expired/replayed/other-device
commands (edge_agent/sync/cmdauth.py), unknown commands and failing handlers all become an error result
(and a log line with the reason). A refused command's result says `"refused": true`.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from edge_agent.core.ports import CommandError, Handler
from edge_agent.sync.cmdauth import CommandAuth

logger = logging.getLogger(__name__)

MAX_COMMAND_BYTES = 64 * 1024
NAME_RE = re.compile(r"^[a-z][a-z0-9_.-]{0,31}$")

__all__ = ["CommandError", "CommandRouter", "Handler"]  # CommandError lives in core: roles raise it


class CommandRouter:
    """`auth=None` runs unsigned commands: only for tests of the parsing; the agent always passes one."""

    def __init__(self, handlers: dict[str, Handler], auth: CommandAuth | None) -> None:
        self.handlers = handlers
        self.auth = auth
        self.rejected = 0
        self.refused = 0

    def _reject(self, name: str, cmd_id: str | None, reason: str) -> dict[str, Any]:
        self.rejected += 1
        logger.warning("rejected command %r: %s", name[:40], reason)
        return {"id": cmd_id, "cmd": name[:40], "ok": False, "error": reason}

    def _refuse(self, name: str, cmd_id: str, reason: str) -> dict[str, Any]:
        self.refused += 1
        return {**self._reject(name, cmd_id, f"refused: {reason}"), "refused": True}

    def handle(self, name: str, payload: bytes) -> dict[str, Any]:
        """Decode, dispatch and answer one command; the answer is published on the result topic."""
        if not isinstance(name, str) or not NAME_RE.match(name):
            return self._reject(str(name), None, "bad command name")
        if len(payload) > MAX_COMMAND_BYTES:
            return self._reject(name, None, f"payload larger than {MAX_COMMAND_BYTES} bytes")
        try:
            doc = json.loads(payload)
        except (ValueError, UnicodeDecodeError, RecursionError) as err:
            return self._reject(name, None, f"payload is not JSON: {str(err)[:80]}")
        if not isinstance(doc, dict):
            return self._reject(name, None, "payload must be a JSON object")
        cmd_id = doc.get("id")
        if not isinstance(cmd_id, str) or not 0 < len(cmd_id) <= 64:
            return self._reject(name, None, "id must be a string of 1..64 characters")
        args = doc.get("args", {})
        if not isinstance(args, dict):
            return self._reject(name, cmd_id, "args must be an object")
        if self.auth is not None:
            reason = self.auth.admit(name, doc)
            if reason is not None:
                return self._refuse(name, cmd_id, reason)
        handler = self.handlers.get(name)
        if handler is None:
            return self._reject(name, cmd_id, f"unknown command; known: {sorted(self.handlers)}")
        try:
            result = handler(args)
        except CommandError as err:
            return self._reject(name, cmd_id, str(err))
        except Exception as err:  # a handler bug must not take the agent down
            logger.exception("command %s failed", name)
            return self._reject(name, cmd_id, f"internal error: {type(err).__name__}")
        logger.info("command %s (%s) done", name, cmd_id)
        return {"id": cmd_id, "cmd": name, "ok": True, "result": result}
