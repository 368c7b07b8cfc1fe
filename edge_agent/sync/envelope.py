"""Wire format v1 of uplink batches and hub acks (docs/protocol.md). Pure: no I/O.

Decoders raise EnvelopeError with a reason for anything malformed; they never raise anything else.
"""

from __future__ import annotations

import gzip
import io
import math
import re
import zlib
from dataclasses import dataclass, field
from typing import Any

import orjson
import zstandard

from edge_agent.records import Block, DataClass, to_ranges

VERSION = 1
CONTENT_TYPE = "application/vnd.venue.batch.v1+json"
ACK_CONTENT_TYPE = "application/vnd.venue.ack.v1+json"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
GZIP_MAGIC = b"\x1f\x8b"
MAX_PAYLOAD = 16 * 1024 * 1024  # decompressed bytes; a zip bomb is rejected, not expanded
MAX_RECORDS = 100_000
ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

_zc = zstandard.ZstdCompressor(level=1)


class EnvelopeError(ValueError):
    """A payload that is not a valid v1 envelope; the message says why."""


@dataclass(frozen=True)
class Batch:
    """A decoded uplink batch: parallel columns of one data class."""

    device: str
    site: str
    cls: DataClass
    batch: str
    epoch: int
    boot: int
    seq: list[int]
    ts: list[float]
    kind: list[str]
    body: list[str]
    skipped: list[tuple[int, int, int, str]]  # (id, first, last, reason)

    def ranges(self) -> list[list[int]]:
        return to_ranges(self.seq)


def compress(data: bytes, method: str) -> bytes:
    if method == "zstd":
        return _zc.compress(data)
    if method == "gzip":
        return gzip.compress(data, compresslevel=1, mtime=0)
    if method == "none":
        return data
    raise ValueError(f"unknown compression {method!r} (zstd, gzip, none)")


def decompress(payload: bytes) -> bytes:
    """Undo the compression the payload's magic bytes announce, within MAX_PAYLOAD."""
    try:
        if payload[:4] == ZSTD_MAGIC:
            with zstandard.ZstdDecompressor().stream_reader(io.BytesIO(payload)) as reader:
                out = reader.read(MAX_PAYLOAD + 1)
        elif payload[:2] == GZIP_MAGIC:
            d = zlib.decompressobj(wbits=31)
            out = d.decompress(payload, MAX_PAYLOAD + 1)
        else:
            out = payload
    except (zstandard.ZstdError, zlib.error, EOFError) as err:
        raise EnvelopeError(f"cannot decompress: {err}") from err
    if len(out) > MAX_PAYLOAD:
        raise EnvelopeError(f"payload larger than {MAX_PAYLOAD} bytes once decompressed")
    return out


def encode_batch(
    device: str, site: str, cls: DataClass, batch: str, epoch: int, boot: int,
    rows: Block, skipped: list[tuple[int, int, int, str]], compression: str = "zstd",
) -> bytes:
    """Serialise rows of one class as a columnar JSON document, compressed."""
    doc = {
        "v": VERSION, "device": device, "site": site, "class": cls.value, "batch": batch,
        "epoch": epoch, "boot": boot,
        "seq": rows.seq, "ts": rows.ts, "kind": rows.kind, "body": rows.body,
        "skipped": [list(s) for s in skipped],
    }
    return compress(orjson.dumps(doc), compression)


def _load(payload: bytes) -> dict[str, Any]:
    if not isinstance(payload, (bytes, bytearray)):
        raise EnvelopeError("payload must be bytes")
    raw = decompress(bytes(payload))
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as err:
        raise EnvelopeError(f"not JSON: {err}") from err
    if not isinstance(doc, dict):
        raise EnvelopeError("envelope must be a JSON object")
    if doc.get("v") != VERSION:
        raise EnvelopeError(f"unsupported envelope version {doc.get('v')!r}")
    return doc


def _int(doc: dict[str, Any], key: str, lo: int = 0, hi: int = 2**63 - 1) -> int:
    v = doc.get(key)
    if type(v) is not int or not lo <= v <= hi:
        raise EnvelopeError(f"{key} must be an integer in [{lo}, {hi}], got {v!r}"[:200])
    return v


def _ident(doc: dict[str, Any], key: str) -> str:
    v = doc.get(key)
    if not isinstance(v, str) or not ID_RE.match(v):
        raise EnvelopeError(f"{key} must be an identifier [A-Za-z0-9_.-]{{1,64}}, got {v!r}"[:200])
    return v


def _finite(ts: list[float]) -> bool:
    # fsum is one C pass; it raises OverflowError when finite values overflow the sum (ts=[1.7e308]*2),
    # and then only the per-value check can tell.
    try:
        if math.isfinite(math.fsum(ts)):
            return True
    except OverflowError:
        pass
    return all(map(math.isfinite, ts))


def decode_batch(payload: bytes) -> Batch:
    """Validate and decode an uplink batch."""
    doc = _load(payload)
    try:
        cls = DataClass(doc.get("class"))
    except ValueError as err:
        raise EnvelopeError(f"unknown class {doc.get('class')!r}"[:200]) from err
    cols: dict[str, Any] = {k: doc.get(k) for k in ("seq", "ts", "kind", "body")}
    for k, col in cols.items():
        if not isinstance(col, list):
            raise EnvelopeError(f"{k} must be a list")
    n = len(cols["seq"])
    if any(len(c) != n for c in cols.values()):
        raise EnvelopeError("seq, ts, kind and body must have the same length")
    if n > MAX_RECORDS:
        raise EnvelopeError(f"more than {MAX_RECORDS} records in one batch")
    seq, ts, kind, body = cols["seq"], cols["ts"], cols["kind"], cols["body"]
    # Whole-column checks in C (set/map/min/max) instead of a Python loop per record.
    if n and (set(map(type, seq)) != {int} or min(seq) <= 0 or max(seq) >= 2**63):
        raise EnvelopeError("seq values must be positive 63-bit integers")
    if len(set(seq)) != n:
        raise EnvelopeError("seq values repeat within the batch")
    if n and not set(map(type, ts)) <= {int, float}:
        raise EnvelopeError("ts values must be numbers")
    if n and not _finite(ts):
        raise EnvelopeError("ts values must be finite")
    if not set(map(type, kind)) <= {str} or not all(0 < len(k) <= 64 for k in set(kind)):
        raise EnvelopeError("kind values must be strings of 1..64 characters")
    if not set(map(type, body)) <= {str}:
        raise EnvelopeError("body values must be JSON text strings")
    skipped = doc.get("skipped", [])
    if not isinstance(skipped, list) or not all(
        isinstance(s, list) and len(s) == 4 and all(type(x) is int and x >= 0 for x in s[:3])
        and s[1] <= s[2] and isinstance(s[3], str) and len(s[3]) <= 32 for s in skipped
    ):
        raise EnvelopeError("skipped must be a list of [id, first, last, reason]")
    batch = doc.get("batch")
    if not isinstance(batch, str) or not 0 < len(batch) <= 64:
        raise EnvelopeError("batch id must be a string of 1..64 characters")
    return Batch(
        device=_ident(doc, "device"), site=_ident(doc, "site"), cls=cls, batch=batch,
        epoch=_int(doc, "epoch"), boot=_int(doc, "boot"), seq=seq, ts=ts,
        kind=kind, body=body, skipped=[(s[0], s[1], s[2], s[3]) for s in skipped],
    )


@dataclass(frozen=True)
class Ack:
    """The hub's application acknowledgement, sent after its database commit."""

    batch: str
    cls: DataClass
    ranges: list[list[int]]
    skip_ids: list[int]
    stored: int
    dup: int
    error: str | None = None
    conflict: list[list[int]] = field(default_factory=list)  # seqs the hub holds a different record under
    top: int | None = None  # with error "seq_rewind": the highest seq the hub holds for the device


def encode_ack(ack: Ack) -> bytes:
    doc: dict[str, Any] = {"v": VERSION, "batch": ack.batch, "class": ack.cls.value,
                           "ranges": ack.ranges, "skips": ack.skip_ids, "stored": ack.stored, "dup": ack.dup}
    if ack.error:
        doc["error"] = ack.error
    if ack.conflict:
        doc["conflict"] = ack.conflict
    if ack.top is not None:
        doc["top"] = ack.top
    return orjson.dumps(doc)


def _ranges(doc: dict[str, Any], key: str) -> list[list[int]]:
    ranges = doc.get(key, [])
    if not isinstance(ranges, list) or not all(
        isinstance(r, list) and len(r) == 2 and all(type(x) is int and 0 < x < 2**63 for x in r)
        and r[0] <= r[1] for r in ranges
    ):
        raise EnvelopeError(f"{key} must be a list of [first, last] positive integers")
    return ranges


def decode_ack(payload: bytes) -> Ack:
    doc = _load(payload)
    batch = doc.get("batch")
    if not isinstance(batch, str) or not batch:
        raise EnvelopeError("ack needs a batch id")
    try:
        cls = DataClass(doc.get("class"))
    except ValueError as err:
        raise EnvelopeError(f"unknown class {doc.get('class')!r}"[:200]) from err
    if not isinstance(doc.get("ranges"), list):
        raise EnvelopeError("ranges must be a list of [first, last] positive integers")
    ranges = _ranges(doc, "ranges")
    skips = doc.get("skips", [])
    if not isinstance(skips, list) or not all(type(x) is int and 0 <= x < 2**63 for x in skips):
        raise EnvelopeError("skips must be a list of integers")
    error = doc.get("error")
    if error is not None and not isinstance(error, str):
        raise EnvelopeError("error must be a string")
    top = None if doc.get("top") is None else _int(doc, "top")
    return Ack(batch, cls, ranges, skips, _int(doc, "stored"), _int(doc, "dup"), error, _ranges(doc, "conflict"), top)
