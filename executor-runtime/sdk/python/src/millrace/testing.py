"""Test a Millrace function without Kafka, sockets or sidecars: the handler runs through the SDK's
own batch engine, with state in memory (the Python counterpart of the Go sdktest package).

    from millrace.testing import Harness, kv

    h = Harness(wordcount.sum_counts)
    outs = h.outputs(kv("hello", "1"), kv("hello", "1"))   # values b"1", then b"2"
    assert h.state(0, "hello") == b"2"
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Iterable, List, Mapping, Optional

from ._engine import Engine
from ._handler import Handler
from ._proto.function.v1 import function_pb2 as fpb
from ._state import AsyncMemoryState, MemoryState
from ._types import Bytes, Header, Hooks, Output, Record, SessionInfo, _as_bytes


def kv(key: Bytes, value: Bytes, *, partition: int = 0, stream: str = "", topic: str = "") -> Record:
    """An input record with a key and a value (str is encoded as UTF-8)."""
    return Record(stream=stream, topic=topic, partition=partition, key=key, value=value)


@dataclass
class Result:
    """What one input record produced: its outputs, or the error that dead-letters it."""

    outputs: List[Output] = field(default_factory=list)
    error: Optional[str] = None


class Harness:
    """Runs a handler as the SDK's server would, one batch per call (per run of records of one
    stream, topic and partition, as the wire protocol batches them). State is committed after
    each batch."""

    def __init__(
        self,
        handler: Handler,
        *,
        user_config: Optional[Mapping[str, str]] = None,
        hooks: Optional[Hooks] = None,
        output_streams: Iterable[str] = (),
        entity: str = "test",
    ) -> None:
        self.handler = handler
        self.store = MemoryState()
        backend = AsyncMemoryState(self.store) if handler.is_async else self.store
        info = SessionInfo(entity=entity, user_config=dict(user_config or {}), output_streams=tuple(output_streams))
        self.hooks = hooks or Hooks()
        if self.hooks.on_session is not None:
            self.hooks.on_session(info)
        if self.hooks.on_config is not None:
            self.hooks.on_config(info.user_config, None)
        self.engine = Engine(handler, self.hooks, backend, info)
        self._next_id = 0

    def process(self, *records: Record) -> List[Result]:
        """Run records and return one Result per record. Exceptions of the harness itself, and
        millrace.Abort (a failed batch), propagate."""
        results: List[Result] = []
        rs = list(records)
        while rs:
            n = 1
            while n < len(rs) and (rs[n].stream, rs[n].topic, rs[n].partition) == (rs[0].stream, rs[0].topic, rs[0].partition):
                n += 1
            results.extend(self._batch(rs[:n]))
            rs = rs[n:]
        return results

    def _batch(self, records: List[Record]) -> List[Result]:
        self._next_id += 1
        first = records[0]
        b = fpb.Batch(id=self._next_id, state_session="local", stream=first.stream, topic=first.topic, partition=first.partition)
        now = int(time.time() * 1000)
        for i, r in enumerate(records):
            pr = b.records.add(offset=r.offset or i, key=r.key, value=r.value, timestamp_ms=r.timestamp_ms or now)
            for h in r.headers:
                pr.headers.add(key=h[0], value=_as_bytes(h[1]))
        res = fpb.BatchResult()
        if self.handler.is_async:
            asyncio.run(self.engine.aprocess(b, res))
        else:
            self.engine.process(b, res)
        if len(res.records) != len(records):
            raise AssertionError(f"batch of {len(records)} records got {len(res.records)} results")
        out = []
        for rr in res.records:
            if rr.error:
                out.append(Result(error=rr.error))
                continue
            out.append(Result(outputs=[
                Output(o.key, o.value, stream=o.stream, headers=tuple(Header(h.key, h.value) for h in o.headers), timestamp_ms=o.timestamp_ms)
                for o in rr.outputs
            ]))
        return out

    def outputs(self, *records: Record) -> List[Output]:
        """Run records and return all outputs in order; AssertionError if a record failed."""
        outs: List[Output] = []
        for i, r in enumerate(self.process(*records)):
            if r.error is not None:
                raise AssertionError(f"record {i} failed: {r.error}")
            outs.extend(r.outputs)
        return outs

    def state(self, partition: int, key: Bytes) -> Optional[bytes]:
        """The committed value of key in partition, None when it has none."""
        v, found = self.store.get("local", partition, _as_bytes(key))
        return v if found else None
