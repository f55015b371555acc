from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Mutation(_message.Message):
    __slots__ = ("partition", "key", "value", "delete")
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    DELETE_FIELD_NUMBER: _ClassVar[int]
    partition: int
    key: bytes
    value: bytes
    delete: bool
    def __init__(self, partition: _Optional[int] = ..., key: _Optional[bytes] = ..., value: _Optional[bytes] = ..., delete: _Optional[bool] = ...) -> None: ...

class GetRequest(_message.Message):
    __slots__ = ("session", "partition", "key")
    SESSION_FIELD_NUMBER: _ClassVar[int]
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    session: str
    partition: int
    key: bytes
    def __init__(self, session: _Optional[str] = ..., partition: _Optional[int] = ..., key: _Optional[bytes] = ...) -> None: ...

class GetResponse(_message.Message):
    __slots__ = ("value", "found")
    VALUE_FIELD_NUMBER: _ClassVar[int]
    FOUND_FIELD_NUMBER: _ClassVar[int]
    value: bytes
    found: bool
    def __init__(self, value: _Optional[bytes] = ..., found: _Optional[bool] = ...) -> None: ...

class GetManyRequest(_message.Message):
    __slots__ = ("session", "partition", "keys")
    SESSION_FIELD_NUMBER: _ClassVar[int]
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    session: str
    partition: int
    keys: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, session: _Optional[str] = ..., partition: _Optional[int] = ..., keys: _Optional[_Iterable[bytes]] = ...) -> None: ...

class GetManyResponse(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedCompositeFieldContainer[GetResponse]
    def __init__(self, values: _Optional[_Iterable[_Union[GetResponse, _Mapping]]] = ...) -> None: ...

class WriteRequest(_message.Message):
    __slots__ = ("session", "mutations")
    SESSION_FIELD_NUMBER: _ClassVar[int]
    MUTATIONS_FIELD_NUMBER: _ClassVar[int]
    session: str
    mutations: _containers.RepeatedCompositeFieldContainer[Mutation]
    def __init__(self, session: _Optional[str] = ..., mutations: _Optional[_Iterable[_Union[Mutation, _Mapping]]] = ...) -> None: ...

class WriteResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class BeginRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class BeginResponse(_message.Message):
    __slots__ = ("session",)
    SESSION_FIELD_NUMBER: _ClassVar[int]
    session: str
    def __init__(self, session: _Optional[str] = ...) -> None: ...

class AssignRequest(_message.Message):
    __slots__ = ("session", "partitions")
    SESSION_FIELD_NUMBER: _ClassVar[int]
    PARTITIONS_FIELD_NUMBER: _ClassVar[int]
    session: str
    partitions: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, session: _Optional[str] = ..., partitions: _Optional[_Iterable[int]] = ...) -> None: ...

class AssignResponse(_message.Message):
    __slots__ = ("restored_records",)
    RESTORED_RECORDS_FIELD_NUMBER: _ClassVar[int]
    restored_records: int
    def __init__(self, restored_records: _Optional[int] = ...) -> None: ...

class FlushRequest(_message.Message):
    __slots__ = ("session",)
    SESSION_FIELD_NUMBER: _ClassVar[int]
    session: str
    def __init__(self, session: _Optional[str] = ...) -> None: ...

class FlushResponse(_message.Message):
    __slots__ = ("mutations",)
    MUTATIONS_FIELD_NUMBER: _ClassVar[int]
    mutations: _containers.RepeatedCompositeFieldContainer[Mutation]
    def __init__(self, mutations: _Optional[_Iterable[_Union[Mutation, _Mapping]]] = ...) -> None: ...

class CompleteRequest(_message.Message):
    __slots__ = ("session", "commit")
    SESSION_FIELD_NUMBER: _ClassVar[int]
    COMMIT_FIELD_NUMBER: _ClassVar[int]
    session: str
    commit: bool
    def __init__(self, session: _Optional[str] = ..., commit: _Optional[bool] = ...) -> None: ...

class CompleteResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
