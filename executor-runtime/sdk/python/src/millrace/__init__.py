"""Millrace functions in Python.

A function is a Handler: map, flat_map, filter and stateful build one from a plain function
(def or async def). main (or serve) runs it as the gRPC server the Millrace I/O sidecar talks to
over a Unix domain socket (docs/function-protocol.md); millrace.testing runs it in process for
tests.

    import millrace

    @millrace.flat_map
    def split(ctx, record):
        for word in record.value.decode().split():
            yield millrace.Output(key=word, value="1")

    if __name__ == "__main__":
        millrace.main(split)
"""

__version__ = "0.1.0"

from ._handler import AsyncState, Handler, State, filter, flat_map, map, stateful  # noqa: E402
from ._server import (  # noqa: E402
    DEFAULT_SHUTDOWN_TIMEOUT,
    DEFAULT_SOCKET,
    ENV_FUNCTION_SOCKET,
    ENV_STATE_SOCKET,
    PROTOCOL_VERSIONS,
    SDK_NAME,
    ShutdownTimeout,
    main,
    serve,
)
from ._types import (  # noqa: E402
    Abort,
    BatchInfo,
    Context,
    Header,
    Hooks,
    Output,
    Record,
    RecordError,
    SessionInfo,
    StateUnavailable,
)

__all__ = [
    "Abort", "AsyncState", "BatchInfo", "Context", "DEFAULT_SHUTDOWN_TIMEOUT", "DEFAULT_SOCKET",
    "ENV_FUNCTION_SOCKET", "ENV_STATE_SOCKET", "Handler", "Header", "Hooks", "Output",
    "PROTOCOL_VERSIONS", "Record", "RecordError", "SDK_NAME", "SessionInfo", "ShutdownTimeout",
    "State", "StateUnavailable", "filter", "flat_map", "main", "map", "serve", "stateful",
]
