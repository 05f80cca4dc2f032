"""Time stamps of each request's way through one gateway worker (`bench.ttft_stages`).

A process started with this folder first on PYTHONPATH and BENCH_STAGE_PROBE set to a file wraps the callables that
STAGES names once their modules are imported, notes `(mark, time.monotonic())` when each is called (and when it
returns, for those with a second mark), and answers SIGUSR2 by writing every note so far to that file as JSON. The
wrappers cost a few µs per request; nothing is written while requests run.
"""

import builtins
import functools
import json
import os
import signal
import sys
import time

# (module, attribute path, mark on call, mark on return or "", coroutine function?), in the order a streamed chat
# completion reaches them. bench.ttft_stages reads the marks; tests/unit/test_bench_ttft_stages.py checks that
# every target still exists.
STAGES = (
    ("uvicorn.protocols.http.httptools_impl", "HttpToolsProtocol.data_received", "bytes in", "", False),
    ("uvicorn.protocols.http.httptools_impl", "HttpToolsProtocol.on_headers_complete", "headers parsed", "", False),
    ("uvicorn.protocols.http.httptools_impl", "RequestResponseCycle.run_asgi", "app task", "", True),
    ("gateway.api.middleware", "RequestTelemetryMiddleware.__call__", "telemetry middleware", "", True),
    ("gateway.api.request_body", "RequestBodyMiddleware.__call__", "body middleware", "", True),
    ("gateway.api.admission", "AdmissionMiddleware.__call__", "admission", "", True),
    ("gateway.api.head", "HeadAsGetMiddleware.__call__", "routing", "", True),
    ("gateway.api.json_body_route", "JsonBodyRoute.handle", "route", "", True),
    ("gateway.api.chat", "serve_generation", "body validated", "response built", True),
    ("gateway.core.truncation", "render_prompt", "template", "template done", False),
    ("grpc.aio._channel", "UnaryStreamMultiCallable.__call__", "gRPC call", "gRPC call made", False),
    # A request on a shared stream (ensemble and BLS by default): queued for the stream's writer task, whose write
    # then falls in "gRPC call made -> response in".
    ("gateway.engine.shared_streams", "SharedStreams.call", "gRPC call", "gRPC call made", False),
    ("gateway.engine.detached_stream", "DetachedStream._put", "response in", "", False),
    ("uvicorn.protocols.http.httptools_impl", "RequestResponseCycle.send", "write", "written", True),
)

_PATH = os.environ.get("BENCH_STAGE_PROBE")


def _wrapped(function, mark, end_mark, is_coroutine, notes):
    now = time.monotonic
    if is_coroutine:

        @functools.wraps(function)
        async def timed(*args, **kwargs):
            notes.append((mark, now()))
            result = await function(*args, **kwargs)
            if end_mark:
                notes.append((end_mark, now()))
            return result

    else:

        @functools.wraps(function)
        def timed(*args, **kwargs):
            notes.append((mark, now()))
            result = function(*args, **kwargs)
            if end_mark:
                notes.append((end_mark, now()))
            return result

    return timed


def _resolve(module_name, path):
    """(owner, attribute name), or None while the module (or the class) is not there yet."""
    owner = sys.modules.get(module_name)
    *outer, name = path.split(".")
    for part in outer:
        owner = getattr(owner, part, None)
    return (owner, name) if owner is not None and hasattr(owner, name) else None


if _PATH:
    _notes = []
    _pending = list(STAGES)
    _import = builtins.__import__
    _busy = [False]

    def _dump(signum, frame):
        with open(_PATH, "w") as f:
            json.dump(_notes, f)

    def _wrap_what_is_there():
        for stage in list(_pending):
            module_name, path, mark, end_mark, is_coroutine = stage
            found = _resolve(module_name, path)
            if found is not None:
                owner, name = found
                setattr(owner, name, _wrapped(getattr(owner, name), mark, end_mark, is_coroutine, _notes))
                _pending.remove(stage)
        if not _pending:
            builtins.__import__ = _import

    def _importing(*args, **kwargs):
        module = _import(*args, **kwargs)
        if not _busy[0]:
            _busy[0] = True
            try:
                _wrap_what_is_there()
            finally:
                _busy[0] = False
        return module

    signal.signal(signal.SIGUSR2, _dump)
    builtins.__import__ = _importing
