"""What runs in a guide-check worker process: meta-schema validation, regex compile, xgrammar's compile, and the
compact-JSON grammar of a schema (openai/compact_json.py).

The parent (openai/guide_checker.py) sends `(kind, source)` and reads back the guide's problem (a message for a
400) or None; for `compact_json`, the grammar or None. These checks are the expensive part of a guide
(xgrammar's conversion grows faster than the text: 100 nested arrays took 0.3 s, 900 took 48 s), so they run
here, where a check that runs past its time limit is ended by killing the process, and a crash on hostile input
takes down this process, not the gateway.
"""

from __future__ import annotations

import functools
import json
import re
import signal
import sys
from multiprocessing.connection import Connection
from types import ModuleType
from typing import Literal

import jsonschema

from gateway.openai.compact_json import compact_json_grammar

CheckKind = Literal["json_schema", "compiled_schema", "regex", "grammar", "compact_json"]

_XGRAMMAR_PREFIX = re.compile(r"^\[[^\]]*\]\s*\S+:\d+:\s*")  # "[17:42:07] /project/cpp/x.cc:94: "
# jsonschema recurses about ten frames per level of a schema; the depth limit keeps levels well below this.
RECURSION_LIMIT = 4000


@functools.cache
def xgrammar() -> ModuleType | None:
    """xgrammar when it is installed (imported once per worker: it loads torch), else None."""
    try:
        import xgrammar as module
    except ImportError:
        return None
    return module


def answer(kind: CheckKind, source: str) -> str | None:
    """The worker's answer to one request: a compact grammar for `compact_json`, else the guide's problem."""
    if kind == "compact_json":
        module = xgrammar()
        return compact_json_grammar(source, module) if module is not None else None
    return guide_problem(kind, source)


def guide_problem(kind: CheckKind, source: str) -> str | None:
    """Why the engine could not enforce this guide, or None."""
    if kind == "json_schema":
        return schema_problem(source)
    if kind == "compiled_schema":
        return xgrammar_problem("from_json_schema", source)
    if kind == "regex":
        try:
            re.compile(source)
        except re.error as exc:
            return f"The regex does not compile: {exc}"
        return xgrammar_problem("from_regex", source)
    return xgrammar_problem("from_ebnf", source)


def schema_problem(text: str) -> str | None:
    """Why the schema (as JSON text) cannot be enforced: its meta-schema, then xgrammar; or None."""
    schema = json.loads(text)
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as exc:
        path = "".join(f"[{p!r}]" for p in exc.path)
        return f"Invalid JSON schema{' at ' + path if path else ''}: {exc.message}"
    return xgrammar_problem("from_json_schema", text)


def xgrammar_problem(constructor: str, source: str) -> str | None:
    """Why xgrammar (when installed) cannot compile the guide, or None."""
    module = xgrammar()
    if module is None:
        return None
    try:
        getattr(module.Grammar, constructor)(source)
    except (RuntimeError, ValueError) as exc:
        reason = _XGRAMMAR_PREFIX.sub("", str(exc).strip().splitlines()[0] if str(exc).strip() else "")
        return f"The guide cannot be compiled: {reason}"
    return None


def serve(connection: Connection) -> None:
    """The worker's loop: answer each `(kind, source)` until the parent closes the pipe (or dies)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle; it ends this process
    sys.setrecursionlimit(RECURSION_LIMIT)
    xgrammar()
    connection.send("ready")
    while True:
        try:
            kind, source = connection.recv()
        except (EOFError, OSError):
            return
        try:
            reply: str | None = answer(kind, source)
        except RecursionError:
            reply = None if kind == "compact_json" else "The guide is nested too deeply to be checked"
        except MemoryError:
            reply = None if kind == "compact_json" else "The guide is too large to be checked"
        connection.send(reply)
