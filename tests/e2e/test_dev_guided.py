"""Guided decoding in the `hf` dev engine (xgrammar on CPU), on every dev model family, called over gRPC.

The engine compiles JSON schemas with xgrammar's defaults, as TensorRT-LLM's guided decoder does, so
whitespace between JSON tokens is free (`any_whitespace`). A random model then rambles in whitespace: with the
bounded 3-field SCHEMA below and sampling (top_k 50, 8 seeds), the dev model ended in 50-119 tokens, mistral in
49-88, deepseek in 207-389 (2 of 8 not within 400) and qwen never within 400 (their vocabularies hold hundreds of
whitespace tokens). A trained model writes compact JSON; these tests make the random one do the same with an
`embedding_bias` (a real engine input) that pushes whitespace-only tokens down: then every family ends in 16-35
tokens, greedy or sampled.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import jsonschema
import numpy as np
import pytest
from tokenizers import Tokenizer

from tests.e2e.dev_family_servers import FAMILY_NAMES, collect, guided_request, serve_engine
from tests.e2e.test_dev_engine import Engine

pytestmark = pytest.mark.e2e

SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 8},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "ok": {"type": "boolean"},
    },
    "required": ["name", "age", "ok"],
    "additionalProperties": False,
}
MAX_TOKENS = 64
PROMPT_TEXT = "Reply with a JSON person."


class Family:
    """One family's running engine and what its requests need."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.tokenizer = Tokenizer.from_file(str(engine.model_dir / "tokenizer.json"))
        config = json.loads((engine.model_dir / "tokenizer_config.json").read_text())
        self.end_id = self.tokenizer.token_to_id(config["eos_token"])
        self.prompt = self.tokenizer.encode(PROMPT_TEXT, add_special_tokens=False).ids
        self.compact_bias = _whitespace_bias(self.tokenizer)

    async def generate(self, guide_type: str, guide: str, max_tokens: int = MAX_TOKENS, **inputs: Any) -> Any:
        request = guided_request(
            self.engine, self.prompt, max_tokens, guide_type, guide, exclude_input_in_output=True,
            end_id=self.end_id, **inputs,
        )  # fmt: skip
        return await collect(self.engine, request)

    def text(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)


def _whitespace_bias(tokenizer: Tokenizer) -> np.ndarray:
    """-1e4 for every token that decodes to whitespace only (decoded after "a", so sentencepiece keeps it)."""
    size = tokenizer.get_vocab_size(with_added_tokens=True)
    anchor = tokenizer.token_to_id("a")
    texts = tokenizer.decode_batch([[anchor, index] for index in range(size)], skip_special_tokens=False)
    return np.array([[-1e4 if text[1:] and not text[1:].strip() else 0.0 for text in texts]], np.float32)


@pytest.fixture(scope="module", params=FAMILY_NAMES)
def family(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Family]:
    for engine in serve_engine(tmp_path_factory.mktemp(request.param), engine="hf", family=request.param):
        yield Family(engine)


@pytest.mark.parametrize("sampling", [{}, {"runtime_top_k": 50, "temperature": 1.0, "seed": 3}])
async def test_json_schema_guide_yields_valid_json_that_ends(family: Family, sampling: dict[str, Any]) -> None:
    reply = await family.generate("json_schema", json.dumps(SCHEMA), embedding_bias=family.compact_bias, **sampling)
    assert not reply.error
    assert len(reply.ids) < MAX_TOKENS  # ended by the grammar (end_id), not by max_tokens
    assert family.end_id not in reply.ids
    # xgrammar lets raw control characters (e.g. a tab) into strings; strict=False reads what it writes.
    jsonschema.validate(json.loads(family.text(reply.ids), strict=False), SCHEMA)


async def test_json_schema_whitespace_is_flexible_as_in_tensorrt_llm(family: Family) -> None:
    reply = await family.generate("json_schema", json.dumps(SCHEMA), max_tokens=12)
    text = family.text(reply.ids)
    assert text.startswith("{")
    assert re.search(r"[ \t\r\n]", text.split('"')[0]), f"no whitespace allowed before the first key: {text!r}"


async def test_regex_guide_output_matches(family: Family) -> None:
    pattern = r"(red|green|blue)-[0-9]{2,3}"
    reply = await family.generate("regex", pattern, **{"runtime_top_k": 50, "seed": 1})
    assert not reply.error and len(reply.ids) < MAX_TOKENS
    assert re.fullmatch(pattern, family.text(reply.ids))


async def test_ebnf_and_json_guides(family: Family) -> None:
    grammar = 'root ::= "yes" | "no" | "maybe " [0-9]'
    reply = await family.generate("ebnf_grammar", grammar)
    assert re.fullmatch(r"yes|no|maybe [0-9]", family.text(reply.ids))
    # Any JSON (object or array, xgrammar's built-in grammar): unbounded strings, so it need not end; check the start.
    streamed = await family.generate("json", "", max_tokens=12, streaming=True)
    whole = await family.generate("json", "", max_tokens=12)
    assert streamed.ids == whole.ids and not whole.error
    assert family.text(whole.ids).lstrip()[:1] in ("{", "[")


async def test_unknown_guide_types_are_dropped_and_bad_guides_refused(family: Family) -> None:
    unguided = await family.engine.generate(family.prompt, 8, exclude_input_in_output=True, end_id=family.end_id)
    dropped = await family.generate("structural_tag", '{"anything": 1}', max_tokens=8)
    assert dropped.ids == unguided.ids and not dropped.error
    refused = await family.generate("json_schema", '{"type": "object", "properties": 7}')
    assert "json_schema" in refused.error


@pytest.fixture(scope="module")
def unguided_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    yield from serve_engine(tmp_path_factory.mktemp("unguided"), engine="hf", guided_decoding_backend="")


async def test_guides_are_ignored_when_the_backend_parameter_is_unfilled(unguided_engine: Engine) -> None:
    family = Family(unguided_engine)
    guided = await family.generate("regex", "[0-9]{3}", max_tokens=16)
    plain = await unguided_engine.generate(family.prompt, 16, exclude_input_in_output=True, end_id=family.end_id)
    assert not guided.error and guided.ids == plain.ids
    assert not re.fullmatch("[0-9]{3}", family.text(guided.ids))
