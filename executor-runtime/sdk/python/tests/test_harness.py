"""The SDK's engine through the user harness (millrace.testing): no Kafka, no sockets."""

from __future__ import annotations

import asyncio

import pytest

import millrace
from millrace.examples import identity, wordcount
from millrace.testing import Harness, kv


def pairs(outs):
    return [(o.key.decode(), o.value.decode()) for o in outs]


@pytest.mark.parametrize(
    "reason,line,want",
    [
        ("words are split on spaces and punctuation and lower-cased", "Hello, hello world!", [("hello", "1"), ("hello", "1"), ("world", "1")]),
        ("an empty line emits nothing", "", []),
        ("letters and digits of any script are words", "Grüße 42 über_alles", [("grüße", "1"), ("42", "1"), ("über", "1"), ("alles", "1")]),
    ],
)
def test_split(reason, line, want):
    assert pairs(Harness(wordcount.split).outputs(kv("", line))) == want, reason


def test_sum_keeps_a_running_count_per_key_and_partition():
    h = Harness(wordcount.sum_counts)
    got = pairs(h.outputs(kv("a", "1"), kv("a", "1"), kv("a", "1", partition=1)))
    got += pairs(h.outputs(kv("a", "5")))
    assert got == [("a", "1"), ("a", "2"), ("a", "1"), ("a", "7")]
    assert h.state(0, "a") == b"7"
    assert h.state(1, "a") == b"1"


def test_sum_rejects_a_non_number_without_changing_state():
    h = Harness(wordcount.sum_counts)
    res = h.process(kv("a", "1"), kv("a", "x"), kv("a", "1"))
    assert res[1].error == "count b'x' is not a number"
    assert pairs(res[2].outputs) == [("a", "2")]


def test_filter_passes_only_kept_records_unchanged():
    h = Harness(millrace.filter(lambda ctx, r: r.value.startswith(b"keep")))
    rec = millrace.Record(key=b"1", value=b"keep me", headers=(millrace.Header("h", b"v"),), timestamp_ms=1234)
    outs = h.outputs(rec, kv("2", "drop me"), kv("3", "keep too"))
    assert [o.key for o in outs] == [b"1", b"3"]
    assert outs[0] == millrace.Output(b"1", b"keep me", headers=[("h", b"v")], timestamp_ms=1234)


def test_a_failed_record_drops_its_state_writes_and_outputs():
    @millrace.stateful
    def fn(ctx, r, st):
        st.put(r.value)
        yield millrace.Output(value=r.value)
        if r.value == b"bad":
            raise ValueError("bad record")

    h = Harness(fn)
    res = h.process(kv("k", "good"), kv("k", "bad"))
    assert res[1].error == "ValueError: bad record" and res[1].outputs == []
    assert h.state(0, "k") == b"good"


def test_a_batch_sees_its_own_writes_and_deletes():
    @millrace.stateful
    def fn(ctx, r, st):
        before = st.get()
        if r.value == b"del":
            st.delete()
        else:
            st.put(r.value)
        return millrace.Output(key=r.key, value=before or b"<none>")

    h = Harness(fn)
    assert [o.value for o in h.outputs(kv("k", "1"), kv("k", "2"), kv("k", "del"), kv("k", "3"))] == [b"<none>", b"1", b"2", b"<none>"]
    assert h.state(0, "k") == b"3"
    h.outputs(kv("k", "del"))
    assert h.state(0, "k") is None


def test_an_exception_is_a_record_error_and_processing_goes_on():
    def boom(ctx, r):
        if r.value == b"boom":
            raise RuntimeError
        return millrace.Output(value=r.value)

    res = Harness(millrace.map(boom)).process(kv("", "boom"), kv("", "ok"))
    assert res[0].error == "RuntimeError"
    assert len(res[1].outputs) == 1


def test_abort_fails_the_batch_not_the_record():
    def fn(ctx, r):
        raise millrace.Abort("database down")

    with pytest.raises(millrace.Abort):
        Harness(millrace.map(fn)).process(kv("", "x"))


def test_state_without_a_state_sidecar_fails_the_batch_even_when_caught():
    from millrace._engine import Engine
    from millrace._proto.function.v1 import function_pb2 as fpb

    @millrace.stateful
    def fn(ctx, r, st):
        try:
            st.get()
        except Exception:  # noqa: BLE001 - a handler that swallows the failure
            pass
        return None

    e = Engine(fn, millrace.Hooks(), None, millrace.SessionInfo())
    b = fpb.Batch(id=1, records=[fpb.Record(key=b"k")])
    with pytest.raises(millrace.StateUnavailable):
        e.process(b, fpb.BatchResult())


def test_user_config_and_hooks():
    batches, errors, configs = [], [], []

    def greet(ctx, r):
        if r.value == b"fail":
            raise millrace.RecordError("fail")
        return millrace.Output(value=ctx.user_config["greeting"] + " " + r.value.decode())

    h = Harness(
        millrace.map(greet),
        user_config={"greeting": "hello"},
        hooks=millrace.Hooks(
            on_batch=batches.append,
            on_record_error=lambda r, e: errors.append(str(e)),
            on_config=lambda new, old: configs.append((dict(new), old)),
        ),
    )
    res = h.process(kv("", "world"), kv("", "fail"))
    assert res[0].outputs[0].value == b"hello world"
    assert res[1].error == "fail"
    assert [(b.records, b.errors, b.outputs) for b in batches] == [(2, 1, 1)]
    assert errors == ["fail"] and configs == [({"greeting": "hello"}, None)]


def test_identity_stamps_the_configured_header():
    outs = Harness(identity.identity, user_config={"stamp": "v2"}).outputs(kv("k", "v"))
    assert outs[0].headers == ((identity.STAMP_HEADER, b"v2"),)
    assert Harness(identity.identity).outputs(kv("k", "v"))[0].headers == ()


def test_records_of_several_partitions_are_separate_batches():
    seen = []
    h = Harness(millrace.map(lambda ctx, r: millrace.Output(value=r.value)), hooks=millrace.Hooks(on_batch=seen.append))
    h.outputs(kv("", "a"), kv("", "b"), kv("", "c", partition=1))
    assert [b.records for b in seen] == [2, 1]


def test_async_handlers():
    @millrace.flat_map
    async def agen(ctx, r):
        await asyncio.sleep(0)
        for w in r.value.split():
            yield millrace.Output(key=w, value=b"1")

    @millrace.map
    async def amap(ctx, r):
        await asyncio.sleep(0)
        if r.value == b"bad":
            raise ValueError("bad")
        return millrace.Output(value=r.value.upper())

    @millrace.stateful
    async def asum(ctx, r, st):
        n = int(await st.get() or 0) + 1
        st.put(str(n))
        return [millrace.Output(key=r.key, value=str(n))]

    @millrace.filter
    async def afilter(ctx, r):
        return r.value != b"drop"

    assert pairs(Harness(agen).outputs(kv("", "a b"))) == [("a", "1"), ("b", "1")]
    res = Harness(amap).process(kv("", "x"), kv("", "bad"))
    assert res[0].outputs[0].value == b"X" and res[1].error == "ValueError: bad"
    h = Harness(asum)
    assert pairs(h.outputs(kv("w", ""), kv("w", ""))) == [("w", "1"), ("w", "2")]
    assert h.state(0, "w") == b"2"
    assert [o.value for o in Harness(afilter).outputs(kv("", "keep"), kv("", "drop"))] == [b"keep"]


def test_emitting_something_else_than_an_output_is_a_record_error():
    res = Harness(millrace.flat_map(lambda ctx, r: [b"not an output"])).process(kv("", "x"))
    assert res[0].error.startswith("TypeError: a handler must emit millrace.Output")
