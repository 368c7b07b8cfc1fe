"""Chinese resident ID numbers (GB 11643-1999): 18 characters, ISO 7064 MOD 11-2 check digit."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re

_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK = "10X98765432"
_FORMAT = re.compile(r"^\d{17}[\dX]$")


def check_digit(first17: str) -> str:
    """The 18th character for the first 17 digits."""
    if len(first17) != 17 or not first17.isdigit():
        raise ValueError("need exactly 17 digits")
    return _CHECK[sum(int(c) * w for c, w in zip(first17, _WEIGHTS, strict=True)) % 11]


def normalise(number: str) -> str:
    return number.strip().upper()


def validate(number: str) -> str | None:
    """None when valid; otherwise why not (format, birth date, check digit). Lower-case x is accepted."""
    n = normalise(number)
    if not _FORMAT.match(n):
        return "an ID number is 17 digits and a digit or X"
    try:
        dt.date(int(n[6:10]), int(n[10:12]), int(n[12:14]))
    except ValueError:
        return "birth date in the ID number is not a date"
    if check_digit(n[:17]) != n[17]:
        return "check digit does not match (GB 11643)"
    return None


def mask(number: str, head: int = 3) -> str:
    """For screens and logs: the first `head` and last 4 characters only."""
    n = number.strip()
    return n[:head] + "*" * (len(n) - head - 4) + n[-4:] if len(n) > head + 4 else "*" * len(n)


def keyed_digest(key: bytes, number: str) -> bytes:
    """HMAC-SHA256 of the normalised number under a site's secret key: what allow-lists carry and store
    (the hub hashes before sending, the gate hashes what its reader reads; the number itself never travels)."""
    return hmac.new(key, normalise(number).encode(), hashlib.sha256).digest()
