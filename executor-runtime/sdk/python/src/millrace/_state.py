"""Clients of the state sidecar (millrace.state.v1.State) and the in-memory store of the test
harness."""

from __future__ import annotations

import threading
from typing import Dict, List, Tuple

import grpc

from ._proto.state.v1 import state_pb2 as spb
from ._proto.state.v1 import state_pb2_grpc as srpc

MAX_MESSAGE_BYTES = 64 << 20

CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
]


class GrpcState:
    """The state sidecar over a sync gRPC channel (sync handlers)."""

    def __init__(self, path: str) -> None:
        self.channel = grpc.insecure_channel("unix:" + path, options=CHANNEL_OPTIONS)
        self.stub = srpc.StateStub(self.channel)

    def get(self, session: str, partition: int, key: bytes) -> Tuple[bytes, bool]:
        res = self.stub.Get(spb.GetRequest(session=session, partition=partition, key=key), wait_for_ready=True, timeout=30)
        return res.value, res.found

    def write(self, session: str, mutations: List[spb.Mutation]) -> None:
        self.stub.Write(spb.WriteRequest(session=session, mutations=mutations), wait_for_ready=True, timeout=30)

    def close(self) -> None:
        self.channel.close()


class AsyncGrpcState:
    """The state sidecar over an asyncio gRPC channel (asyncio handlers)."""

    def __init__(self, path: str) -> None:
        self.channel = grpc.aio.insecure_channel("unix:" + path, options=CHANNEL_OPTIONS)
        self.stub = srpc.StateStub(self.channel)

    async def get(self, session: str, partition: int, key: bytes) -> Tuple[bytes, bool]:
        res = await self.stub.Get(spb.GetRequest(session=session, partition=partition, key=key), wait_for_ready=True, timeout=30)
        return res.value, res.found

    async def write(self, session: str, mutations: List[spb.Mutation]) -> None:
        await self.stub.Write(spb.WriteRequest(session=session, mutations=mutations), wait_for_ready=True, timeout=30)

    async def close(self) -> None:
        await self.channel.close()


class MemoryState:
    """State in memory, applied at once (the test harness commits every batch)."""

    def __init__(self) -> None:
        self.data: Dict[Tuple[int, bytes], bytes] = {}
        self.lock = threading.Lock()

    def get(self, session: str, partition: int, key: bytes) -> Tuple[bytes, bool]:
        with self.lock:
            v = self.data.get((partition, key))
        return (v, True) if v is not None else (b"", False)

    def write(self, session: str, mutations: List[spb.Mutation]) -> None:
        with self.lock:
            for m in mutations:
                if m.delete:
                    self.data.pop((m.partition, m.key), None)
                else:
                    self.data[(m.partition, m.key)] = m.value


class AsyncMemoryState:
    """MemoryState for asyncio handlers."""

    def __init__(self, store: MemoryState) -> None:
        self.store = store

    async def get(self, session: str, partition: int, key: bytes) -> Tuple[bytes, bool]:
        return self.store.get(session, partition, key)

    async def write(self, session: str, mutations: List[spb.Mutation]) -> None:
        self.store.write(session, mutations)
