"""Wire codec: round trips, clear rejections, and fuzzing of every decoder and the downlink router."""

from __future__ import annotations

import gzip
import json

import orjson
import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_agent.records import Block, DataClass, to_ranges
from edge_agent.sync import envelope
from edge_agent.sync.downlink import CommandRouter
from edge_agent.sync.envelope import Ack, EnvelopeError, decode_ack, decode_batch, encode_ack, encode_batch
from hub.ingest import decode_state

ROWS = Block([10, 11, 13], [1.5, 2.0, 3.25], ["gate.pass", "gate.pass", "count"], ['{"a":1}', "[]", '"x"'])


@pytest.mark.parametrize("method", ["zstd", "gzip", "none"])
def test_batch_round_trip(method: str) -> None:
    raw = encode_batch("gate-01", "westlake", DataClass.TRANSACTION, "b1", 5, 2, ROWS, [(7, 3, 4, "budget")], method)
    b = decode_batch(raw)
    assert (b.device, b.site, b.cls, b.batch, b.epoch, b.boot) == ("gate-01", "westlake", DataClass.TRANSACTION,
                                                                    "b1", 5, 2)
    assert b.seq == ROWS.seq and b.body == ROWS.body and b.kind == ROWS.kind and b.ts == ROWS.ts
    assert b.skipped == [(7, 3, 4, "budget")]
    assert b.ranges() == [[10, 11], [13, 13]]


def test_ack_round_trip() -> None:
    ack = Ack("b1", DataClass.MEASUREMENT, [[1, 5], [9, 9]], [3], 6, 0)
    assert decode_ack(encode_ack(ack)) == ack


def good_doc() -> dict[str, object]:
    return json.loads(envelope.decompress(encode_batch("d", "s", DataClass.STATE, "b", 1, 1, ROWS, [], "none")))


@pytest.mark.parametrize("mutate, reason", [
    (lambda d: d.update(v=2), "version"),
    (lambda d: d.update({"class": "secret"}), "class"),
    (lambda d: d.update(seq=[1, 1, 2]), "repeat"),
    (lambda d: d.update(seq=[0, 1, 2]), "positive"),
    (lambda d: d.update(seq=[1, 2, 2**63]), "positive"),
    (lambda d: d.update(seq=[1, "2", 3]), "positive"),
    (lambda d: d.update(ts=[1, float("inf"), 2]), "finite|not JSON"),  # orjson refuses Infinity itself
    (lambda d: d.update(ts=[1, None, 2]), "numbers"),
    (lambda d: d.update(kind=["a", "", "c"]), "kind"),
    (lambda d: d.update(body=["{}", 5, "{}"]), "body"),
    (lambda d: d.update(body=["{}"]), "same length"),
    (lambda d: d.update(device="../etc"), "device"),
    (lambda d: d.update(site="a b"), "site"),
    (lambda d: d.update(epoch=-1), "epoch"),
    (lambda d: d.update(skipped=[[1, 5, 2, "x"]]), "skipped"),
    (lambda d: d.update(batch=""), "batch"),
])
def test_malformed_batches_are_rejected_with_a_reason(mutate, reason) -> None:  # type: ignore[no-untyped-def]
    doc = good_doc()
    mutate(doc)
    with pytest.raises(EnvelopeError, match=reason):
        decode_batch(json.dumps(doc, allow_nan=True).encode())


def test_compression_bombs_are_rejected_not_expanded() -> None:
    big = b"[" + b" " * (envelope.MAX_PAYLOAD + 10) + b"]"
    for packed in (zstandard.ZstdCompressor().compress(big), gzip.compress(big)):
        with pytest.raises(EnvelopeError, match="larger"):
            decode_batch(packed)


def test_truncated_compressed_payloads_are_rejected() -> None:
    raw = encode_batch("d", "s", DataClass.STATE, "b", 1, 1, ROWS, [], "gzip")
    with pytest.raises(EnvelopeError):
        decode_batch(raw[: len(raw) // 2])


@given(st.binary(max_size=2048))
@settings(max_examples=400, deadline=None)
def test_fuzz_decoders_never_crash_on_random_bytes(data: bytes) -> None:
    for decode in (decode_batch, decode_ack, lambda p: decode_state("s", "d", p)):
        try:
            decode(data)
        except EnvelopeError:
            pass


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**64), max_value=2**64) | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5),
    max_leaves=30,
)
doc_keys = st.sampled_from(["v", "device", "site", "class", "batch", "epoch", "boot", "seq", "ts", "kind", "body",
                            "skipped", "ranges", "skips", "stored", "dup", "error", "state", "meta", "id", "args"])


@given(st.dictionaries(doc_keys, json_values, max_size=14), st.sampled_from(["none", "zstd", "gzip"]))
@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_fuzz_structured_documents(doc: dict[str, object], method: str) -> None:
    """Documents with the right keys and wrong shapes: decoded or rejected, never anything else."""
    try:
        raw = envelope.compress(orjson.dumps(doc), method)
    except TypeError:
        return  # an integer orjson cannot encode: nothing to send
    for decode in (decode_batch, decode_ack, lambda p: decode_state("s", "d", p)):
        try:
            decode(raw)
        except EnvelopeError:
            pass


@given(st.text(max_size=40), st.one_of(st.binary(max_size=512),
                                        st.dictionaries(doc_keys, json_values).map(lambda d: json.dumps(d).encode())))
@settings(max_examples=600, deadline=None)
def test_fuzz_downlink_router_answers_everything(name: str, payload: bytes) -> None:
    def boom(args: dict[str, object]) -> dict[str, object]:
        raise RuntimeError("handler bug")

    router = CommandRouter({"ping": lambda a: {"pong": 1}, "boom": boom}, None)  # parsing only: no signatures
    result = router.handle(name, payload)
    assert set(result) >= {"id", "cmd", "ok"}
    assert result["ok"] is False or (name == "ping" and isinstance(result["result"], dict))


def test_router_gives_clear_reasons() -> None:
    router = CommandRouter({"ping": lambda a: {"pong": 1}}, None)  # parsing only: no signatures
    assert router.handle("ping", b'{"id":"1"}') == {"id": "1", "cmd": "ping", "ok": True, "result": {"pong": 1}}
    assert "not JSON" in router.handle("ping", b"{nope")["error"]
    assert "unknown command" in router.handle("reboot", b'{"id":"2"}')["error"]
    assert "id must be" in router.handle("ping", b'{"args":{}}')["error"]
    assert "args must be" in router.handle("ping", b'{"id":"3","args":[]}')["error"]
    assert "larger" in router.handle("ping", b" " * 70_000)["error"]
    assert router.rejected == 5


@given(st.lists(st.integers(min_value=1, max_value=200), max_size=60))
def test_to_ranges_covers_exactly_the_input(seqs: list[int]) -> None:
    ranges = to_ranges(seqs)
    covered = [s for a, b in ranges for s in range(a, b + 1)]
    assert covered == sorted(set(seqs))
    assert all(r2[0] > r1[1] + 1 for r1, r2 in zip(ranges, ranges[1:], strict=False))
