from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ProcessRequest(_message.Message):
    __slots__ = ("open", "batch", "packed_batch")
    OPEN_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    PACKED_BATCH_FIELD_NUMBER: _ClassVar[int]
    open: Open
    batch: Batch
    packed_batch: PackedBatch
    def __init__(self, open: _Optional[_Union[Open, _Mapping]] = ..., batch: _Optional[_Union[Batch, _Mapping]] = ..., packed_batch: _Optional[_Union[PackedBatch, _Mapping]] = ...) -> None: ...

class ProcessResponse(_message.Message):
    __slots__ = ("opened", "result", "stopping", "packed_result")
    OPENED_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    STOPPING_FIELD_NUMBER: _ClassVar[int]
    PACKED_RESULT_FIELD_NUMBER: _ClassVar[int]
    opened: Opened
    result: BatchResult
    stopping: Stopping
    packed_result: PackedResult
    def __init__(self, opened: _Optional[_Union[Opened, _Mapping]] = ..., result: _Optional[_Union[BatchResult, _Mapping]] = ..., stopping: _Optional[_Union[Stopping, _Mapping]] = ..., packed_result: _Optional[_Union[PackedResult, _Mapping]] = ...) -> None: ...

class Stopping(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Open(_message.Message):
    __slots__ = ("protocol_version", "namespace", "pipeline", "entity", "user_config", "input_streams", "output_streams", "state_socket", "protocol_versions")
    class UserConfigEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    PIPELINE_FIELD_NUMBER: _ClassVar[int]
    ENTITY_FIELD_NUMBER: _ClassVar[int]
    USER_CONFIG_FIELD_NUMBER: _ClassVar[int]
    INPUT_STREAMS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_STREAMS_FIELD_NUMBER: _ClassVar[int]
    STATE_SOCKET_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_VERSIONS_FIELD_NUMBER: _ClassVar[int]
    protocol_version: int
    namespace: str
    pipeline: str
    entity: str
    user_config: _containers.ScalarMap[str, str]
    input_streams: _containers.RepeatedScalarFieldContainer[str]
    output_streams: _containers.RepeatedScalarFieldContainer[str]
    state_socket: str
    protocol_versions: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, protocol_version: _Optional[int] = ..., namespace: _Optional[str] = ..., pipeline: _Optional[str] = ..., entity: _Optional[str] = ..., user_config: _Optional[_Mapping[str, str]] = ..., input_streams: _Optional[_Iterable[str]] = ..., output_streams: _Optional[_Iterable[str]] = ..., state_socket: _Optional[str] = ..., protocol_versions: _Optional[_Iterable[int]] = ...) -> None: ...

class Opened(_message.Message):
    __slots__ = ("protocol_version", "sdk", "protocol_versions")
    PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    SDK_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_VERSIONS_FIELD_NUMBER: _ClassVar[int]
    protocol_version: int
    sdk: str
    protocol_versions: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, protocol_version: _Optional[int] = ..., sdk: _Optional[str] = ..., protocol_versions: _Optional[_Iterable[int]] = ...) -> None: ...

class Batch(_message.Message):
    __slots__ = ("id", "state_session", "stream", "topic", "partition", "records")
    ID_FIELD_NUMBER: _ClassVar[int]
    STATE_SESSION_FIELD_NUMBER: _ClassVar[int]
    STREAM_FIELD_NUMBER: _ClassVar[int]
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    id: int
    state_session: str
    stream: str
    topic: str
    partition: int
    records: _containers.RepeatedCompositeFieldContainer[Record]
    def __init__(self, id: _Optional[int] = ..., state_session: _Optional[str] = ..., stream: _Optional[str] = ..., topic: _Optional[str] = ..., partition: _Optional[int] = ..., records: _Optional[_Iterable[_Union[Record, _Mapping]]] = ...) -> None: ...

class Header(_message.Message):
    __slots__ = ("key", "value")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    key: str
    value: bytes
    def __init__(self, key: _Optional[str] = ..., value: _Optional[bytes] = ...) -> None: ...

class Record(_message.Message):
    __slots__ = ("offset", "key", "value", "headers", "timestamp_ms")
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    HEADERS_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_MS_FIELD_NUMBER: _ClassVar[int]
    offset: int
    key: bytes
    value: bytes
    headers: _containers.RepeatedCompositeFieldContainer[Header]
    timestamp_ms: int
    def __init__(self, offset: _Optional[int] = ..., key: _Optional[bytes] = ..., value: _Optional[bytes] = ..., headers: _Optional[_Iterable[_Union[Header, _Mapping]]] = ..., timestamp_ms: _Optional[int] = ...) -> None: ...

class BatchResult(_message.Message):
    __slots__ = ("id", "records")
    ID_FIELD_NUMBER: _ClassVar[int]
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    id: int
    records: _containers.RepeatedCompositeFieldContainer[RecordResult]
    def __init__(self, id: _Optional[int] = ..., records: _Optional[_Iterable[_Union[RecordResult, _Mapping]]] = ...) -> None: ...

class RecordResult(_message.Message):
    __slots__ = ("outputs", "error")
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    outputs: _containers.RepeatedCompositeFieldContainer[OutputRecord]
    error: str
    def __init__(self, outputs: _Optional[_Iterable[_Union[OutputRecord, _Mapping]]] = ..., error: _Optional[str] = ...) -> None: ...

class OutputRecord(_message.Message):
    __slots__ = ("stream", "key", "value", "headers", "timestamp_ms")
    STREAM_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    HEADERS_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_MS_FIELD_NUMBER: _ClassVar[int]
    stream: str
    key: bytes
    value: bytes
    headers: _containers.RepeatedCompositeFieldContainer[Header]
    timestamp_ms: int
    def __init__(self, stream: _Optional[str] = ..., key: _Optional[bytes] = ..., value: _Optional[bytes] = ..., headers: _Optional[_Iterable[_Union[Header, _Mapping]]] = ..., timestamp_ms: _Optional[int] = ...) -> None: ...

class PackedBatch(_message.Message):
    __slots__ = ("id", "state_session", "stream", "topic", "partition", "count", "base_offset", "base_timestamp_ms", "records", "state_generation", "state_interval")
    ID_FIELD_NUMBER: _ClassVar[int]
    STATE_SESSION_FIELD_NUMBER: _ClassVar[int]
    STREAM_FIELD_NUMBER: _ClassVar[int]
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    BASE_OFFSET_FIELD_NUMBER: _ClassVar[int]
    BASE_TIMESTAMP_MS_FIELD_NUMBER: _ClassVar[int]
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    STATE_GENERATION_FIELD_NUMBER: _ClassVar[int]
    STATE_INTERVAL_FIELD_NUMBER: _ClassVar[int]
    id: int
    state_session: str
    stream: str
    topic: str
    partition: int
    count: int
    base_offset: int
    base_timestamp_ms: int
    records: bytes
    state_generation: int
    state_interval: int
    def __init__(self, id: _Optional[int] = ..., state_session: _Optional[str] = ..., stream: _Optional[str] = ..., topic: _Optional[str] = ..., partition: _Optional[int] = ..., count: _Optional[int] = ..., base_offset: _Optional[int] = ..., base_timestamp_ms: _Optional[int] = ..., records: _Optional[bytes] = ..., state_generation: _Optional[int] = ..., state_interval: _Optional[int] = ...) -> None: ...

class PackedResult(_message.Message):
    __slots__ = ("id", "count", "records", "state")
    ID_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    id: int
    count: int
    records: bytes
    state: bytes
    def __init__(self, id: _Optional[int] = ..., count: _Optional[int] = ..., records: _Optional[bytes] = ..., state: _Optional[bytes] = ...) -> None: ...
