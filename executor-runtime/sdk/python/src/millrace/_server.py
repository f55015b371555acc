"""Serving a handler as a Millrace function: the gRPC server on a Unix domain socket that the I/O
sidecar talks to (docs/function-protocol.md), and the shutdown in the kubelet's order."""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import logging
import os
import signal
import sys
from typing import Any, Dict, Mapping, Optional, Set

import grpc

from . import __version__
from ._engine import Engine
from ._handler import Handler
from ._proto.function.v1 import function_pb2 as fpb
from ._proto.function.v1 import function_pb2_grpc as frpc
from ._state import CHANNEL_OPTIONS, AsyncGrpcState, GrpcState
from ._types import Abort, Hooks, SessionInfo

log = logging.getLogger("millrace")

ENV_FUNCTION_SOCKET = "MILLRACE_FUNCTION_SOCKET"
ENV_STATE_SOCKET = "MILLRACE_STATE_SOCKET"
DEFAULT_SOCKET = "/var/run/millrace/function.sock"
# How long serve waits after SIGTERM for the I/O sidecar to commit and close its sessions: the
# sidecar's own drain bound (20 s), inside Kubernetes' default 30 s grace period.
DEFAULT_SHUTDOWN_TIMEOUT = 20.0
SDK_NAME = f"millrace-python/{__version__}"

# The function protocol versions this SDK speaks, best first. A version is a proto package
# (millrace.function.v1, ...); the session's Open says which one the sidecar speaks. Adding a
# version is an entry here and its codec in _Session (see negotiate).
PROTOCOL_VERSIONS = (1,)


class ShutdownTimeout(Exception):
    """The I/O sidecar did not close its sessions within the shutdown timeout after the stop: they
    were cut off, and the sidecar redoes their uncommitted interval."""


def negotiate(open_msg: Any) -> Optional[int]:
    """The protocol version of a session, or None when the sidecar speaks none this SDK does."""
    v = open_msg.protocol_version
    return v if v in PROTOCOL_VERSIONS else None


class _Session:
    """One Process call: writes (results, the stopping notice) go through one lock, since two
    tasks write to the stream."""

    def __init__(self, context: Any) -> None:
        self.context = context
        self.lock = asyncio.Lock()
        self.told_stopping = False

    async def write(self, msg: Any) -> None:
        async with self.lock:
            await self.context.write(msg)

    async def tell_stopping(self) -> None:
        if self.told_stopping:
            return
        self.told_stopping = True
        try:
            await self.write(fpb.ProcessResponse(stopping=fpb.Stopping()))
            log.info("told the I/O sidecar that the function is stopping")
        except Exception as err:  # noqa: BLE001 - the session is ending anyway
            log.debug("stopping notice not sent: %s", err)


class _Function(frpc.FunctionServicer):
    def __init__(self, handler: Handler, hooks: Hooks, socket_path: str, state_socket: str) -> None:
        self.handler = handler
        self.hooks = hooks
        self.socket_path = socket_path
        self.state_socket = state_socket
        self.sessions: Set[_Session] = set()
        self.idle = asyncio.Event()
        self.idle.set()
        self.stopping = False
        self.states: Dict[str, Any] = {}
        self.last_config: Optional[Mapping[str, str]] = None
        # Sync handlers run in a worker thread, so that a slow batch does not hold up the event
        # loop (the stopping notice, other sessions); one thread keeps a session's batches in order.
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="millrace-handler")

    def state_for(self, open_msg: Any) -> Any:
        path = self.state_socket
        if not path:
            if not open_msg.state_socket:
                return None
            path = os.path.join(os.path.dirname(self.socket_path), open_msg.state_socket)
        st = self.states.get(path)
        if st is None:
            st = AsyncGrpcState(path) if self.handler.is_async else GrpcState(path)
            self.states[path] = st
        return st

    async def close(self) -> None:
        for st in self.states.values():
            r = st.close()
            if asyncio.iscoroutine(r):
                await r
        self.pool.shutdown(wait=False)

    async def stop(self) -> None:
        self.stopping = True
        await asyncio.gather(*(s.tell_stopping() for s in list(self.sessions)))

    async def Process(self, request_iterator: Any, context: Any) -> None:  # noqa: N802 - gRPC's name
        first = await context.read()
        if first is grpc.aio.EOF:
            return
        if first.WhichOneof("request") != "open":
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "the first message of a session must be Open")
        o = first.open
        version = negotiate(o)
        if version is None:
            await context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"protocol version {o.protocol_version} is not supported: this function speaks {', '.join(map(str, PROTOCOL_VERSIONS))}",
            )
        try:
            backend = self.state_for(o)
        except Exception as err:  # noqa: BLE001
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"connect to the state sidecar: {err}")
        info = SessionInfo(
            namespace=o.namespace, pipeline=o.pipeline, entity=o.entity, user_config=dict(o.user_config),
            input_streams=tuple(o.input_streams), output_streams=tuple(o.output_streams), protocol_version=version,
        )
        if self.hooks.on_session is not None:
            self.hooks.on_session(info)
        if info.user_config != self.last_config:
            old, self.last_config = self.last_config, info.user_config
            if self.hooks.on_config is not None:
                self.hooks.on_config(info.user_config, old)
        log.info("session opened: entity=%s outputs=%s protocol=%d", info.entity, list(info.output_streams), version)
        session = _Session(context)
        await session.write(fpb.ProcessResponse(opened=fpb.Opened(protocol_version=version, sdk=SDK_NAME)))
        self.sessions.add(session)
        self.idle.clear()
        try:
            if self.stopping:
                await session.tell_stopping()
            await self._batches(session, context, Engine(self.handler, self.hooks, backend, info))
        finally:
            self.sessions.discard(session)
            if not self.sessions:
                self.idle.set()

    async def _batches(self, session: _Session, context: Any, engine: Engine) -> None:
        loop = asyncio.get_running_loop()
        while True:
            req = await context.read()
            if req is grpc.aio.EOF:
                return
            if req.WhichOneof("request") != "batch":
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "expected a Batch after Open")
            resp = fpb.ProcessResponse()
            try:
                if self.handler.is_async:
                    await engine.aprocess(req.batch, resp.result)
                else:
                    await loop.run_in_executor(self.pool, engine.process, req.batch, resp.result)
            except Abort as err:
                log.warning("batch %d failed, ending the session: %s", req.batch.id, err)
                await context.abort(grpc.StatusCode.ABORTED, str(err))
            await session.write(resp)


def _socket_path(socket: Optional[str]) -> str:
    return socket or os.environ.get(ENV_FUNCTION_SOCKET) or DEFAULT_SOCKET


async def serve(
    handler: Handler,
    *,
    socket: Optional[str] = None,
    state_socket: Optional[str] = None,
    hooks: Optional[Hooks] = None,
    shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT,
    stop: Optional[asyncio.Event] = None,
) -> None:
    """Serve handler as a Millrace function until stop is set (main sets it on SIGTERM/SIGINT).

    Then, as the kubelet signals the function before its sidecars, it does not wait for the I/O
    sidecar to stop: it tells every open session it is stopping, keeps answering the batches it is
    sent, and returns once the sidecar has committed and closed them, or raises ShutdownTimeout
    after shutdown_timeout seconds.
    """
    hooks = hooks or Hooks()
    path = os.path.abspath(_socket_path(socket))
    state_socket = state_socket or os.environ.get(ENV_STATE_SOCKET, "")
    stop = stop or asyncio.Event()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    # A socket file left by a killed predecessor would make the bind fail.
    try:
        os.remove(path)
    except FileNotFoundError:
        pass
    server = grpc.aio.server(options=CHANNEL_OPTIONS)
    fn = _Function(handler, hooks, path, state_socket)
    frpc.add_FunctionServicer_to_server(fn, server)
    server.add_insecure_port("unix:" + path)
    await server.start()
    log.info("function serving on %s (%s, %r)", path, SDK_NAME, handler)
    if hooks.on_serving is not None:
        hooks.on_serving(path)
    try:
        await stop.wait()
        log.info("function stopping; asking the I/O sidecar to commit and close the session")
        if hooks.on_stopping is not None:
            hooks.on_stopping()
        await fn.stop()
        try:
            await asyncio.wait_for(fn.idle.wait(), shutdown_timeout)
        except asyncio.TimeoutError:
            log.error("the I/O sidecar did not close its session in time; stopping hard (timeout %ss)", shutdown_timeout)
            raise ShutdownTimeout(f"the I/O sidecar did not close its session within {shutdown_timeout}s") from None
        log.info("function stopped")
    finally:
        await server.stop(0)
        await fn.close()
        if hooks.on_stopped is not None:
            hooks.on_stopped()


def main(handler: Handler, *, argv: Optional[list] = None, **options: Any) -> None:
    """The whole main of a function program: reads --socket (else MILLRACE_FUNCTION_SOCKET), serves
    until SIGTERM or SIGINT, and exits non-zero on failure. Other arguments are left to the program
    (sys.argv after parse_known_args)."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--socket", default="", help=f"Unix socket to serve on (default ${ENV_FUNCTION_SOCKET} or {DEFAULT_SOCKET})")
    args, _ = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.socket:
        options["socket"] = args.socket

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await serve(handler, stop=stop, **options)

    try:
        asyncio.run(run())
    except Exception as err:  # noqa: BLE001
        log.error("function failed: %s", err)
        sys.exit(1)
