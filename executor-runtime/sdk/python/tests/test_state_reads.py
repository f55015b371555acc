"""A stateful batch reads its keys from the state sidecar in one GetMany, and falls back to one
Get per key when the sidecar predates GetMany (the Go SDK's contract, TestStateReadsOfABatchAreOneCall)."""

from __future__ import annotations

import millrace
from millrace._state import MemoryState, NoGetMany
from millrace.examples import wordcount
from millrace.testing import Harness, kv


class Counting:
    """A MemoryState backend that counts the calls the engine makes."""

    def __init__(self, store: MemoryState, get_many: bool = True) -> None:
        self.store = store
        self.gets = 0
        self.get_manys = 0
        self.has_get_many = get_many

    def get(self, session, partition, key):
        self.gets += 1
        return self.store.get(session, partition, key)

    def get_many(self, session, partition, keys):
        self.get_manys += 1
        if not self.has_get_many:
            raise NoGetMany()
        return self.store.get_many(session, partition, keys)

    def write(self, session, mutations):
        self.store.write(session, mutations)


class AsyncCounting(Counting):
    async def get(self, session, partition, key):  # type: ignore[override]
        return Counting.get(self, session, partition, key)

    async def get_many(self, session, partition, keys):  # type: ignore[override]
        return Counting.get_many(self, session, partition, keys)

    async def write(self, session, mutations):  # type: ignore[override]
        Counting.write(self, session, mutations)


def counts(h: Harness, *recs):
    return [(o.key.decode(), o.value.decode()) for o in h.outputs(*recs)]


def test_a_batch_reads_its_keys_in_one_call():
    h = Harness(wordcount.sum_counts)
    h.store.data[(0, b"a")] = b"10"
    c = Counting(h.store)
    h.engine.backend = c
    got = counts(h, kv("a", "1"), kv("b", "1"), kv("a", "1"), kv("c", "2"), kv("b", "1"))
    assert got == [("a", "11"), ("b", "1"), ("a", "12"), ("c", "2"), ("b", "2")]
    assert (c.get_manys, c.gets) == (1, 0), "one GetMany for the batch's keys, no Get"
    got = counts(h, kv("a", "1"))
    assert got == [("a", "13")]
    assert (c.get_manys, c.gets) == (2, 0), "one GetMany per batch"


def test_an_older_state_sidecar_is_read_key_by_key():
    h = Harness(wordcount.sum_counts)
    c = Counting(h.store, get_many=False)
    h.engine.backend = c
    got = counts(h, kv("a", "1"), kv("b", "1"), kv("a", "1"))
    assert got == [("a", "1"), ("b", "1"), ("a", "2")]
    # a's second read is answered by the batch's own write: two reads reach the store.
    assert (c.get_manys, c.gets) == (1, 2)


def test_asyncio_handlers_read_a_batch_in_one_call():
    @millrace.stateful
    async def asum(ctx: millrace.Context, r: millrace.Record, st: millrace.State):
        n = int(r.value) + int(await st.get() or b"0")
        st.put(str(n))
        return millrace.Output(r.key, str(n))

    h = Harness(asum)
    c = AsyncCounting(h.store)
    h.engine.backend = c
    assert counts(h, kv("a", "1"), kv("b", "1"), kv("a", "1")) == [("a", "1"), ("b", "1"), ("a", "2")]
    assert (c.get_manys, c.gets) == (1, 0)
