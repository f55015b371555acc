"""The batch engine: turns a protocol Batch into its BatchResult, shared by the server and the
test harness. It processes a session's batches one after another, which is what makes a batch see
the state writes of the one before."""

from __future__ import annotations

import time
from typing import Any, Dict, Optional, Protocol, Tuple

from ._handler import FILTER, FLAT_MAP, MAP, STATEFUL, Handler, outputs_of
from ._proto.function.v1 import function_pb2 as fpb
from ._proto.state.v1 import state_pb2 as spb
from ._state import NoGetMany
from ._types import Abort, BatchInfo, Bytes, Context, Header, Hooks, Output, Record, StateUnavailable, _as_bytes, _record_of

StateKey = Tuple[int, bytes]
# A pending write: the new value, or None for a delete.
Pending = Optional[bytes]


class StateBackend(Protocol):
    def get(self, session: str, partition: int, key: bytes) -> Tuple[bytes, bool]: ...

    def write(self, session: str, mutations: list) -> None: ...


class AsyncStateBackend(Protocol):
    async def get(self, session: str, partition: int, key: bytes) -> Tuple[bytes, bool]: ...

    async def write(self, session: str, mutations: list) -> None: ...


_NO_STATE = "state is not configured for this entity (spec.entities[].state.enabled)"
_UNSET = object()


class _BatchReads:
    """The values of a batch's keys, read in one GetMany at the batch's first read that its own
    writes do not answer (the state sidecar's view cannot change during a batch: the batch's
    writes reach it only when the batch is answered). A backend without get_many, or a state
    sidecar that predates GetMany, is read key by key."""

    __slots__ = ("keys", "values", "many")

    def __init__(self, keys: list) -> None:
        self.keys = keys
        self.values: Optional[Dict[bytes, Tuple[bytes, bool]]] = None
        self.many = True


class _RecordState:
    """The State of one record: its writes stay local until the record succeeds."""

    __slots__ = ("_backend", "_writes", "_session", "_partition", "_key", "_pending", "backend_error", "_reads")

    def __init__(self, backend: Any, writes: Dict[StateKey, Pending], session: str, partition: int, key: bytes,
                 reads: Optional[_BatchReads] = None) -> None:
        self._reads = reads
        self._backend = backend
        self._writes = writes
        self._session = session
        self._partition = partition
        self._key = key
        self._pending: Any = _UNSET
        # A failure of the state store itself fails the batch rather than dead-lettering the
        # record, even when the handler catches the exception: the record is not at fault.
        self.backend_error: Optional[BaseException] = None

    def _local(self) -> Any:
        if self._pending is not _UNSET:
            return self._pending
        return self._writes.get((self._partition, self._key), _UNSET)

    def _fail(self, err: BaseException) -> StateUnavailable:
        e = err if isinstance(err, StateUnavailable) else StateUnavailable(f"state sidecar: {err}")
        self.backend_error = e
        return e

    def put(self, value: Bytes) -> None:
        if self._backend is None:
            raise self._fail(StateUnavailable(_NO_STATE))
        self._pending = _as_bytes(value)

    def delete(self) -> None:
        if self._backend is None:
            raise self._fail(StateUnavailable(_NO_STATE))
        self._pending = None

    def written(self) -> bool:
        return self._pending is not _UNSET

    def _unread_batch(self) -> Optional[_BatchReads]:
        """The batch's reads when they are still to be fetched with one get_many, else None."""
        r = self._reads
        if r is not None and r.many and r.values is None and hasattr(self._backend, "get_many"):
            return r
        return None

    def _batch_value(self) -> Any:
        """The key's value from the batch's get_many (None when not found), or _UNSET."""
        r = self._reads
        if r is None or not r.many or r.values is None or self._key not in r.values:
            return _UNSET
        value, found = r.values[self._key]
        return value if found else None


class _SyncState(_RecordState):
    __slots__ = ()

    def get(self) -> Optional[bytes]:
        if self._backend is None:
            raise self._fail(StateUnavailable(_NO_STATE))
        v = self._local()
        if v is not _UNSET:
            return v  # type: ignore[no-any-return]
        try:
            reads = self._unread_batch()
            if reads is not None:
                try:
                    reads.values = self._backend.get_many(self._session, self._partition, reads.keys)
                except NoGetMany:
                    reads.many = False
            hit = self._batch_value()
            if hit is not _UNSET:
                return hit  # type: ignore[no-any-return]
            value, found = self._backend.get(self._session, self._partition, self._key)
        except Exception as err:  # noqa: BLE001 - any failure of the call fails the batch
            raise self._fail(err) from err
        return value if found else None


class _AsyncState(_RecordState):
    __slots__ = ()

    async def get(self) -> Optional[bytes]:
        if self._backend is None:
            raise self._fail(StateUnavailable(_NO_STATE))
        v = self._local()
        if v is not _UNSET:
            return v  # type: ignore[no-any-return]
        try:
            reads = self._unread_batch()
            if reads is not None:
                try:
                    reads.values = await self._backend.get_many(self._session, self._partition, reads.keys)
                except NoGetMany:
                    reads.many = False
            hit = self._batch_value()
            if hit is not _UNSET:
                return hit  # type: ignore[no-any-return]
            value, found = await self._backend.get(self._session, self._partition, self._key)
        except Exception as err:  # noqa: BLE001
            raise self._fail(err) from err
        return value if found else None


def error_text(err: BaseException) -> str:
    """The dead-letter message of a failed record (never empty)."""
    from ._types import RecordError

    msg = str(err)
    if isinstance(err, RecordError) and msg:
        return msg
    return f"{type(err).__name__}: {msg}" if msg else type(err).__name__


def _add_output(rr: Any, o: Any) -> None:
    if type(o) is not Output and not isinstance(o, Output):
        raise TypeError(f"a handler must emit millrace.Output, not {type(o).__name__}")
    # One call per output: every attribute set on a protobuf message is a call into upb.
    if o.headers:
        rr.outputs.add(key=o.key, value=o.value, stream=o.stream, timestamp_ms=o.timestamp_ms,
                       headers=[fpb.Header(key=h[0], value=_as_bytes(h[1])) for h in o.headers])
    elif o.stream or o.timestamp_ms:
        rr.outputs.add(key=o.key, value=o.value, stream=o.stream, timestamp_ms=o.timestamp_ms)
    else:
        rr.outputs.add(key=o.key, value=o.value)


def _headers(pr: Any) -> tuple:
    return tuple(Header(h.key, h.value) for h in pr.headers)


class Engine:
    """Processes the batches of one session."""

    def __init__(self, handler: Handler, hooks: Hooks, backend: Any, session: Any) -> None:
        self.handler = handler
        self.hooks = hooks
        self.backend = backend
        self.ctx = Context(session)

    def _failed(self, rr: Any, r: Record, err: BaseException, st: Optional[_RecordState]) -> None:
        if isinstance(err, Abort):
            raise err
        if st is not None and st.backend_error is not None:
            raise st.backend_error
        del rr.outputs[:]
        rr.error = error_text(err)
        if self.hooks.on_record_error is not None:
            self.hooks.on_record_error(r, err)

    def _mutations(self, writes: Dict[StateKey, Pending]) -> list:
        return [
            spb.Mutation(partition=p, key=k, value=v or b"", delete=v is None)
            for (p, k), v in writes.items()
        ]

    def _report(self, n: int, errors: int, res: Any, start: float) -> None:
        if self.hooks.on_batch is not None:
            outputs = sum(len(rr.outputs) for rr in res.records)
            self.hooks.on_batch(BatchInfo(n, errors, outputs, time.perf_counter() - start))

    def process(self, batch: Any, res: Any) -> None:
        """Fill res (a BatchResult) with one RecordResult per record of batch (sync handlers),
        writing the batch's state changes before it returns."""
        start = time.perf_counter()
        res.id = batch.id
        add = res.records.add
        fn, kind, ctx = self.handler.fn, self.handler.kind, self.ctx
        stream, topic, partition = batch.stream, batch.topic, batch.partition
        writes: Dict[StateKey, Pending] = {}
        reads: Optional[_BatchReads] = None
        errors = 0
        for pr in batch.records:
            r = _record_of(stream, topic, partition, pr.offset, pr.key, pr.value,
                           _headers(pr) if len(pr.headers) else (), pr.timestamp_ms)
            rr = add()
            st = None
            try:
                if kind is MAP:
                    o = fn(ctx, r)
                    # _add_output inlined for the common map output: no headers, no stream.
                    if type(o) is Output and not o.headers and not o.stream:
                        if o.timestamp_ms:
                            rr.outputs.add(key=o.key, value=o.value, timestamp_ms=o.timestamp_ms)
                        else:
                            rr.outputs.add(key=o.key, value=o.value)
                    else:
                        _add_output(rr, o)
                elif kind is FLAT_MAP:
                    for o in outputs_of(fn(ctx, r)):
                        _add_output(rr, o)
                elif kind is FILTER:
                    if fn(ctx, r):
                        _add_output(rr, Output(r.key, r.value, headers=r.headers, timestamp_ms=r.timestamp_ms))
                else:
                    if reads is None:
                        reads = _BatchReads(list(dict.fromkeys(p.key for p in batch.records)))
                    st = _SyncState(self.backend, writes, batch.state_session, partition, r.key, reads)
                    for o in outputs_of(fn(ctx, r, st)):
                        _add_output(rr, o)
                    if st.backend_error is not None:
                        raise st.backend_error
                    if st.written():
                        writes[(partition, r.key)] = st._pending
            except Exception as err:  # noqa: BLE001 - any exception of the handler is the record's
                self._failed(rr, r, err, st)
                errors += 1
        if writes:
            try:
                self.backend.write(batch.state_session, self._mutations(writes))
            except Exception as err:  # noqa: BLE001
                raise StateUnavailable(f"write state of batch {batch.id}: {err}") from err
        self._report(len(batch.records), errors, res, start)

    async def aprocess(self, batch: Any, res: Any) -> None:
        """process for asyncio handlers."""
        start = time.perf_counter()
        res.id = batch.id
        add = res.records.add
        fn, kind, ctx = self.handler.fn, self.handler.kind, self.ctx
        stream, topic, partition = batch.stream, batch.topic, batch.partition
        writes: Dict[StateKey, Pending] = {}
        reads: Optional[_BatchReads] = None
        errors = 0
        for pr in batch.records:
            r = Record(stream, topic, partition, pr.offset, pr.key, pr.value,
                       _headers(pr) if len(pr.headers) else (), pr.timestamp_ms)
            rr = add()
            st = None
            try:
                if kind is MAP:
                    _add_output(rr, await fn(ctx, r))
                elif kind is FILTER:
                    if await fn(ctx, r):
                        _add_output(rr, Output(r.key, r.value, headers=r.headers, timestamp_ms=r.timestamp_ms))
                else:
                    if kind is STATEFUL:
                        if reads is None:
                            reads = _BatchReads(list(dict.fromkeys(p.key for p in batch.records)))
                        st = _AsyncState(self.backend, writes, batch.state_session, partition, r.key, reads)
                        result = fn(ctx, r, st)
                    else:
                        result = fn(ctx, r)
                    if hasattr(result, "__aiter__"):
                        async for o in result:
                            _add_output(rr, o)
                    else:
                        for o in outputs_of(await result):
                            _add_output(rr, o)
                    if st is not None:
                        if st.backend_error is not None:
                            raise st.backend_error
                        if st.written():
                            writes[(partition, r.key)] = st._pending
            except Exception as err:  # noqa: BLE001
                self._failed(rr, r, err, st)
                errors += 1
        if writes:
            try:
                await self.backend.write(batch.state_session, self._mutations(writes))
            except Exception as err:  # noqa: BLE001
                raise StateUnavailable(f"write state of batch {batch.id}: {err}") from err
        self._report(len(batch.records), errors, res, start)


def new_result() -> Any:
    """A ProcessResponse whose result the engine fills in place (no copy before sending)."""
    return fpb.ProcessResponse()
