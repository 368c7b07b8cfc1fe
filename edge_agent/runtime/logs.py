"""Logging set-up for the entry points, with a filter that keeps secrets out of every log line."""

from __future__ import annotations

import logging
import re

_PATTERNS = [
    re.compile(r"(?i)\b(password|passwd|secret|token|api[_-]?key|authorization)(\s*[=:]\s*)(\S+)"),
    re.compile(r"(?i)(mqtts?|postgres(?:ql)?)://([^:/@\s]+):([^@\s]+)@"),
]


class RedactSecrets(logging.Filter):
    """Replace known secret values and secret-looking key=value pairs with ***."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: set[str] = set()

    def add(self, secret: str | None) -> None:
        if secret and len(secret) >= 4:
            self.secrets.add(secret)

    def redact(self, text: str) -> str:
        for s in self.secrets:
            text = text.replace(s, "***")
        text = _PATTERNS[0].sub(lambda m: m.group(1) + m.group(2) + "***", text)
        return _PATTERNS[1].sub(lambda m: f"{m.group(1)}://{m.group(2)}:***@", text)

    def filter(self, record: logging.LogRecord) -> bool:
        message = self.redact(record.getMessage())
        record.msg, record.args = message, None
        if record.exc_info and not record.exc_text:
            record.exc_text = self.redact(logging.Formatter().formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        return True


REDACTOR = RedactSecrets()


def setup(level: str = "INFO") -> None:
    """Configure the root logger once (entry points only)."""
    root = logging.getLogger()
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(REDACTOR)
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(level)
