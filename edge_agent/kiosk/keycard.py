"""What a key card carries (pure): a room grant in two 16-byte Mifare blocks, bound to the card's UID.

Block 0: b"SVK" | version (1) | room (8 bytes ASCII, space padded) | stay number (uint32 BE)
Block 1: valid from, valid to (uint32 BE, minutes since the Unix epoch) | HMAC-SHA256(key, uid | block 0 |
         times)[:8]
A lock vendor's own format (Adel, Prousys, …) would replace this module; the grant and the dispenser's
encode/read steps stay the same. Raised: ValueError for a card that is not ours or was altered.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from dataclasses import dataclass

MAGIC, VERSION = b"SVK", 1


@dataclass(frozen=True)
class Grant:
    room: str
    stay: int
    valid_from: int  # unix seconds
    valid_to: int


def encode(grant: Grant, uid: bytes, key: bytes) -> bytes:
    room = grant.room.encode("ascii")
    if len(room) > 8 or not room:
        raise ValueError("room numbers are 1-8 ASCII characters")
    b0 = MAGIC + bytes([VERSION]) + room.ljust(8) + struct.pack(">I", grant.stay)
    times = struct.pack(">II", grant.valid_from // 60, grant.valid_to // 60)
    return b0 + times + hmac.new(key, uid + b0 + times, hashlib.sha256).digest()[:8]


def decode(blocks: bytes, uid: bytes, key: bytes) -> Grant:
    if len(blocks) < 32 or blocks[:3] != MAGIC or blocks[3] != VERSION:
        raise ValueError("not a key card of this hotel")
    b0, times, tag = blocks[:16], blocks[16:24], blocks[24:32]
    if not hmac.compare_digest(tag, hmac.new(key, uid + b0 + times, hashlib.sha256).digest()[:8]):
        raise ValueError("key card data does not check out (altered or copied to another card)")
    start, end = struct.unpack(">II", times)
    return Grant(b0[4:12].decode("ascii").strip(), struct.unpack(">I", b0[12:16])[0], start * 60, end * 60)
