"""Handlers: what a function does with one record, built from a plain function."""

from __future__ import annotations

import inspect
from typing import Any, Awaitable, Callable, Iterable, Optional, Protocol, Union

from ._types import Bytes, Context, Output, Record

MAP, FLAT_MAP, FILTER, STATEFUL = "map", "flat_map", "filter", "stateful"


class State(Protocol):
    """The state of one record's key in the record's partition (sync handlers).

    Writes are visible at once to later records and become durable when the I/O sidecar
    commits; the writes of a record whose handler fails are dropped. Only get() talks to the
    state sidecar; put() and delete() are buffered until the batch is answered.
    """

    def get(self) -> Optional[bytes]:
        """The value, or None when the key has none."""

    def put(self, value: Bytes) -> None:
        """Set the value."""

    def delete(self) -> None:
        """Remove the value."""


class AsyncState(Protocol):
    """State for asyncio handlers: the same as State, with get() awaitable."""

    async def get(self) -> Optional[bytes]:
        """The value, or None when the key has none."""

    def put(self, value: Bytes) -> None:
        """Set the value."""

    def delete(self) -> None:
        """Remove the value."""


class Handler:
    """A function's per-record logic. Build one with map, flat_map, filter or stateful.

    A handler that raises marks the record as poison: it goes to its stream's dead-letter topic,
    its outputs and state writes are dropped, and processing continues with the next record.
    Raise millrace.Abort to fail the whole batch instead.
    """

    __slots__ = ("kind", "fn", "is_async", "name")

    def __init__(self, kind: str, fn: Callable[..., Any]) -> None:
        self.kind = kind
        self.fn = fn
        self.is_async = inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn)
        self.name = getattr(fn, "__name__", kind)

    def __repr__(self) -> str:
        return f"<millrace.Handler {self.kind} {self.name}{' async' if self.is_async else ''}>"


MapFn = Callable[[Context, Record], Union[Output, Awaitable[Output]]]
FlatMapFn = Callable[[Context, Record], Any]
FilterFn = Callable[[Context, Record], Union[bool, Awaitable[bool]]]
StatefulFn = Callable[[Context, Record, Any], Any]


def map(fn: MapFn) -> Handler:  # noqa: A001 - the name of the shape, as in the Go SDK
    """One output per input: fn(ctx, record) -> Output (sync or async def)."""
    return Handler(MAP, fn)


def flat_map(fn: FlatMapFn) -> Handler:
    """Zero or more outputs per input: fn(ctx, record) returns an iterable of Output (a list, a
    generator); an async def returns one, or is an async generator."""
    return Handler(FLAT_MAP, fn)


def filter(fn: FilterFn) -> Handler:  # noqa: A001
    """Pass the input unchanged (key, value, headers, timestamp) to the only output stream when
    fn(ctx, record) is true."""
    return Handler(FILTER, fn)


def stateful(fn: StatefulFn) -> Handler:
    """fn(ctx, record, state) with the state of the record's key in its partition; it returns the
    outputs as flat_map does (None for none). The entity must have state enabled."""
    return Handler(STATEFUL, fn)


def outputs_of(result: Any) -> Iterable[Output]:
    """The outputs a flat_map or stateful handler returned."""
    if result is None:
        return ()
    if isinstance(result, Output):
        return (result,)
    return result  # type: ignore[no-any-return]
