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


class NoGetMany(Exception):
    """get_many's answer when the state sidecar predates GetMany: read key by key instead."""


def _values(keys: List[bytes], res: "spb.GetManyResponse") -> Dict[bytes, Tuple[bytes, bool]]:
    if len(res.values) != len(keys):
        raise RuntimeError(f"GetMany answered {len(res.values)} values for {len(keys)} keys")
    return {k: (v.value, v.found) for k, v in zip(keys, res.values)}


class GrpcState:
    """The state sidecar over a sync gRPC channel (sync handlers)."""

    def __init__(self, path: str) -> None:
        self.channel = grpc.insecure_channel("unix:" + path, options=CHANNEL_OPTIONS)
        self.stub = srpc.StateStub(self.channel)
        self.has_get_many = True

    def get(self, session: str, partition: int, key: bytes) -> Tuple[bytes, bool]:
        res = self.stub.Get(spb.GetRequest(session=session, partition=partition, key=key), wait_for_ready=True, timeout=30)
        return res.value, res.found

    def get_many(self, session: str, partition: int, keys: List[bytes]) -> Dict[bytes, Tuple[bytes, bool]]:
        """The values of keys in one call; NoGetMany from a state sidecar without GetMany."""
        if not self.has_get_many:
            raise NoGetMany()
        try:
            res = self.stub.GetMany(spb.GetManyRequest(session=session, partition=partition, keys=keys),
                                    wait_for_ready=True, timeout=30)
        except grpc.RpcError as err:
            if err.code() == grpc.StatusCode.UNIMPLEMENTED:
                self.has_get_many = False
                raise NoGetMany() from err
            raise
        return _values(keys, res)

    def write(self, session: str, mutations: List[spb.Mutation]) -> None:
        self.stub.Write(spb.WriteRequest(session=session, mutations=mutations), wait_for_ready=True, timeout=30)

    def close(self) -> None:
        self.channel.close()


class AsyncGrpcState:
    """The state sidecar over an asyncio gRPC channel (asyncio handlers)."""

    def __init__(self, path: str) -> None:
        self.channel = grpc.aio.insecure_channel("unix:" + path, options=CHANNEL_OPTIONS)
        self.stub = srpc.StateStub(self.channel)
        self.has_get_many = True

    async def get(self, session: str, partition: int, key: bytes) -> Tuple[bytes, bool]:
        res = await self.stub.Get(spb.GetRequest(session=session, partition=partition, key=key), wait_for_ready=True, timeout=30)
        return res.value, res.found

    async def get_many(self, session: str, partition: int, keys: List[bytes]) -> Dict[bytes, Tuple[bytes, bool]]:
        if not self.has_get_many:
            raise NoGetMany()
        try:
            res = await self.stub.GetMany(spb.GetManyRequest(session=session, partition=partition, keys=keys),
                                          wait_for_ready=True, timeout=30)
        except grpc.aio.AioRpcError as err:
            if err.code() == grpc.StatusCode.UNIMPLEMENTED:
                self.has_get_many = False
                raise NoGetMany() from err
            raise
        return _values(keys, res)

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

    def get_many(self, session: str, partition: int, keys: List[bytes]) -> Dict[bytes, Tuple[bytes, bool]]:
        return {k: self.get(session, partition, k) for k in keys}

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

    async def get_many(self, session: str, partition: int, keys: List[bytes]) -> Dict[bytes, Tuple[bytes, bool]]:
        return self.store.get_many(session, partition, keys)

    async def write(self, session: str, mutations: List[spb.Mutation]) -> None:
        self.store.write(session, mutations)
