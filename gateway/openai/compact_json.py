"""JSON guides without free whitespace: the schema's grammar as xgrammar builds it with compact separators, sent to
the engine as an `ebnf_grammar` guide.

TensorRT-LLM compiles `json` and `json_schema` guides with xgrammar's defaults, which allow any run of whitespace
between JSON tokens. Small, quantized or random models fill it: on the dev model a `json_schema` answer ran into
`max_tokens` 256 in 8 of 20 seeds, and a forced call cut at 6 tokens was `"[\\n   \\t\\r   "` (vLLM turns this
whitespace off with an option for the same reason). TensorRT-LLM has no such option, but it takes any EBNF
grammar: the grammar xgrammar builds from the schema with `any_whitespace=False` and separators `,` and `:`
allows exactly the compact JSON text of the values the schema allows. `json_object` (any JSON object) becomes the
grammar of `{"type": "object"}`.

The EBNF is xgrammar's own printout, made readable by the parser of xgrammar 0.1 (the engine's, e.g. 0.1.19): an
unbounded repetition is written `{n,}`, not `{n, -1}` as xgrammar 0.2 prints it; a schema whose grammar needs one
of xgrammar 0.2's built-in functions (a string `pattern` becomes `Regex(...)`) keeps its `json_schema` guide.
Building it costs about as much as the schema check (0.3-0.5 ms for a small schema; it is CPU work), so it runs
in the guide checker's worker process (openai/guide_worker.py), and its result is cached by the schema's text.
"""

from __future__ import annotations

import re
from types import ModuleType

ANY_OBJECT_SCHEMA = '{"type":"object"}'
# A string literal or a character class (skipped as they are), an unbounded repetition `{n, -1}`, or a built-in
# function such as `Regex(...)` (xgrammar 0.2 writes a schema's `pattern` so).
_EBNF_PARTS = re.compile(r'"(?:[^"\\]|\\.)*"|\[(?:[^\]\\]|\\.)*\]|\{(\d+), -1\}|([A-Za-z_]\w*)\(')


def compact_json_grammar(schema: str, xgrammar: ModuleType) -> str | None:
    """The EBNF of the compact JSON text of `schema`'s values (built with the `xgrammar` module given), or None
    where that EBNF could not be read by the engine's xgrammar, or xgrammar cannot build it (the guide then stays
    a JSON guide)."""
    try:
        grammar = xgrammar.Grammar.from_json_schema(schema, any_whitespace=False, separators=(",", ":"))
    except (RuntimeError, ValueError):
        return None
    return portable_ebnf(str(grammar))


def portable_ebnf(ebnf: str) -> str | None:
    """`ebnf` with every `{n, -1}` outside string literals and character classes written `{n,}`; None when it
    calls a built-in function, which xgrammar 0.1 does not have."""
    parts: list[str] = []
    position = 0
    for match in _EBNF_PARTS.finditer(ebnf):
        if match.group(2) is not None:
            return None
        if match.group(1) is not None:
            parts += [ebnf[position : match.start()], f"{{{match.group(1)},}}"]
            position = match.end()
    return "".join(parts) + ebnf[position:]
