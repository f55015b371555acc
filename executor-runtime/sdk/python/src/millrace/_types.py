"""The values a Millrace function sees and returns: records, outputs, session and batch facts."""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, NamedTuple, Optional, Sequence, Union

Bytes = Union[bytes, bytearray, memoryview, str]


class Header(NamedTuple):
    """A Kafka record header."""

    key: str
    value: bytes


def _as_bytes(v: Optional[Bytes]) -> bytes:
    if v is None:
        return b""
    if isinstance(v, bytes):
        return v
    if isinstance(v, str):
        return v.encode("utf-8")
    return bytes(v)


class Record:
    """One input record: a Kafka record of one partition of one input stream.

    A null key or value arrives as empty bytes (the protocol cannot tell them apart).
    """

    __slots__ = ("stream", "topic", "partition", "offset", "key", "value", "headers", "timestamp_ms")

    def __init__(
        self,
        stream: str = "",
        topic: str = "",
        partition: int = 0,
        offset: int = 0,
        key: Bytes = b"",
        value: Bytes = b"",
        headers: Sequence[Header] = (),
        timestamp_ms: int = 0,
    ) -> None:
        #: The Millrace stream the record was read from; topic is its Kafka topic.
        self.stream = stream
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.key = _as_bytes(key)
        self.value = _as_bytes(value)
        self.headers = headers
        #: The Kafka timestamp, milliseconds since the Unix epoch.
        self.timestamp_ms = timestamp_ms

    @property
    def timestamp(self) -> _dt.datetime:
        """The Kafka timestamp as an aware UTC datetime."""
        return _dt.datetime.fromtimestamp(self.timestamp_ms / 1000, tz=_dt.timezone.utc)

    def __repr__(self) -> str:
        return (
            f"Record(topic={self.topic!r}, partition={self.partition}, offset={self.offset}, "
            f"key={self.key!r}, value={self.value!r})"
        )


def _record_of(stream: str, topic: str, partition: int, offset: int, key: bytes, value: bytes,
               headers: Sequence[Header], timestamp_ms: int) -> Record:
    """A Record from fields that are already of the right types (the engine's per-record path):
    Record() without its argument checks."""
    r = _new_record(Record)
    r.stream = stream
    r.topic = topic
    r.partition = partition
    r.offset = offset
    r.key = key
    r.value = value
    r.headers = headers
    r.timestamp_ms = timestamp_ms
    return r


_new_record = object.__new__


class Output:
    """One record a function emits.

    key and value may be given as str (encoded as UTF-8). stream empty means the entity's only
    output stream. timestamp_ms 0 means the input record's timestamp. An empty key or value is
    produced as Kafka null.
    """

    __slots__ = ("key", "value", "stream", "headers", "timestamp_ms")

    def __init__(
        self,
        key: Optional[Bytes] = b"",
        value: Optional[Bytes] = b"",
        *,
        stream: str = "",
        headers: Sequence[Union[Header, tuple[str, Bytes]]] = (),
        timestamp_ms: int = 0,
    ) -> None:
        self.key = key if type(key) is bytes else _as_bytes(key)
        self.value = value if type(value) is bytes else _as_bytes(value)
        self.stream = stream
        self.headers = headers
        self.timestamp_ms = timestamp_ms

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Output):
            return NotImplemented
        return (
            self.key == other.key
            and self.value == other.value
            and self.stream == other.stream
            and [tuple(h) for h in self.headers] == [tuple(h) for h in other.headers]
            and self.timestamp_ms == other.timestamp_ms
        )

    def __repr__(self) -> str:
        extra = ""
        if self.stream:
            extra += f", stream={self.stream!r}"
        if self.headers:
            extra += f", headers={list(self.headers)!r}"
        if self.timestamp_ms:
            extra += f", timestamp_ms={self.timestamp_ms}"
        return f"Output(key={self.key!r}, value={self.value!r}{extra})"


@dataclass(frozen=True)
class SessionInfo:
    """A session opened by the I/O sidecar: who the function is and its configuration."""

    namespace: str = ""
    pipeline: str = ""
    entity: str = ""
    user_config: Mapping[str, str] = field(default_factory=dict)
    input_streams: Sequence[str] = ()
    output_streams: Sequence[str] = ()
    protocol_version: int = 1


@dataclass(frozen=True)
class BatchInfo:
    """One processed batch."""

    records: int
    errors: int
    outputs: int
    duration_s: float


class Context:
    """What a handler knows about its session: the entity's user configuration and the session.

    A new session (with a new Context) starts whenever the operator changes the entity's
    configuration; the configuration of a session never changes under a handler.
    """

    __slots__ = ("session", "user_config")

    def __init__(self, session: SessionInfo) -> None:
        self.session = session
        self.user_config: Mapping[str, str] = session.user_config


@dataclass
class Hooks:
    """Callbacks for metrics, logging and lifecycle; each may be None. They run on the processing
    path: keep them fast.

    - on_serving(socket_path): the function listens.
    - on_session(SessionInfo): the I/O sidecar opened a session.
    - on_config(new, old): a session opened with a user configuration that differs from the one
      before (old is None for the first session): the hot-reload callback.
    - on_batch(BatchInfo): a batch was processed.
    - on_record_error(record, exception): a record failed and goes to the dead-letter topic.
    - on_stopping(): SIGTERM (or the stop event) arrived; the SDK tells the sidecar it stops.
    - on_stopped(): the function has stopped serving.
    """

    on_serving: Optional[Callable[[str], Any]] = None
    on_session: Optional[Callable[[SessionInfo], Any]] = None
    on_config: Optional[Callable[[Mapping[str, str], Optional[Mapping[str, str]]], Any]] = None
    on_batch: Optional[Callable[[BatchInfo], Any]] = None
    on_record_error: Optional[Callable[[Record, BaseException], Any]] = None
    on_stopping: Optional[Callable[[], Any]] = None
    on_stopped: Optional[Callable[[], Any]] = None


class RecordError(Exception):
    """Raise it to dead-letter a record with exactly this message (any other exception is
    dead-lettered as "TypeName: message")."""


class Abort(Exception):
    """Raise it for a failure of the environment, not of the record (a dependency is down): the
    whole batch fails, the session ends, and the I/O sidecar redoes the work from its last commit.
    """


class StateUnavailable(Abort):
    """A call to the state sidecar failed (or the entity has no state): the batch fails, the
    record is not dead-lettered."""
