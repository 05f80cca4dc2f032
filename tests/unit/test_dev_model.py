"""The deterministic dev model: tokenizer round trips, chat template, tiny Llama, cache and determinism."""

import dataclasses
import json
import subprocess
import sys
import threading
import unicodedata
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerBase

from gateway.devstack import dev_model
from gateway.devstack.dev_model import (
    BOS_TOKEN,
    END_HEADER_TOKEN,
    END_OF_TEXT_TOKEN,
    EOT_TOKEN,
    PAD_TOKEN,
    SPECIAL_TOKENS,
    START_HEADER_TOKEN,
    corpus_files,
    dev_model_fingerprint,
    ensure_dev_model,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
ASSISTANT_HEADER = f"{START_HEADER_TOKEN}assistant{END_HEADER_TOKEN}\n\n"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ensure_dev_model(tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="module")
def tokenizer(model_dir: Path) -> PreTrainedTokenizerBase:
    return AutoTokenizer.from_pretrained(model_dir)


@pytest.fixture
def build_counter(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Record every folder the builder builds into, while still building it."""
    built: list[Path] = []
    real_build: Callable[[Path], None] = dev_model._build

    def counting_build(folder: Path) -> None:
        built.append(folder)
        real_build(folder)

    monkeypatch.setattr(dev_model, "_build", counting_build)
    return built


def _corpus_lines() -> list[str]:
    return [line for path in corpus_files() for line in path.read_text(encoding="utf-8").splitlines() if line]


def _is_cjk(ch: str) -> bool:
    name = unicodedata.name(ch, "")
    return name.startswith(("CJK UNIFIED", "HIRAGANA", "KATAKANA", "HANGUL"))


def _is_emoji(ch: str) -> bool:
    return ord(ch) >= 0x1F000


def _folder_bytes(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


# --- tokenizer ---------------------------------------------------------------------------------------------


def test_corpus_is_substantial_and_multilingual() -> None:
    text = "".join(path.read_text(encoding="utf-8") for path in corpus_files())
    assert len(text.encode("utf-8")) >= 30_000
    assert len(_corpus_lines()) >= 300
    assert sum(map(_is_cjk, text)) > 500
    assert sum(map(_is_emoji, text)) > 100
    assert "\u200d" in text  # ZWJ sequences
    assert "🇫🇷" in text  # regional-indicator flags


def test_every_corpus_line_round_trips(tokenizer: PreTrainedTokenizerBase) -> None:
    lines = _corpus_lines()
    failures = [line for line in lines if tokenizer.decode(tokenizer.encode(line, add_special_tokens=False)) != line]
    assert failures == []
    for path in corpus_files():
        text = path.read_text(encoding="utf-8")
        assert tokenizer.decode(tokenizer.encode(text, add_special_tokens=False)) == text


def test_text_outside_the_corpus_round_trips(tokenizer: PreTrainedTokenizerBase) -> None:
    # Every 7th code point from ASCII to the supplementary planes, minus surrogates which UTF-8 cannot carry.
    text = "".join(chr(c) for c in range(0x09, 0x2FFFF, 7) if not 0xD800 <= c <= 0xDFFF)
    assert tokenizer.decode(tokenizer.encode(text, add_special_tokens=False)) == text
    spaced = "  leading and trailing spaces \t\n\n  "
    assert tokenizer.decode(tokenizer.encode(spaced, add_special_tokens=False)) == spaced


def test_vocab_size_is_in_range(tokenizer: PreTrainedTokenizerBase, model_dir: Path) -> None:
    assert 2000 <= len(tokenizer) <= 4000
    assert len(tokenizer) == dev_model.PARAMS.vocab_size
    config = json.loads((model_dir / "config.json").read_text())
    assert config["vocab_size"] == len(tokenizer)


def test_cjk_and_emoji_split_into_partial_utf8_tokens(tokenizer: PreTrainedTokenizerBase) -> None:
    text = "".join(path.read_text(encoding="utf-8") for path in corpus_files())
    split: dict[str, list[int]] = {}
    for ch in sorted(set(text)):
        ids = tokenizer.encode(ch, add_special_tokens=False)
        if len(ids) > 1:
            split[ch] = ids
    split_cjk = [ch for ch in split if _is_cjk(ch)]
    split_emoji = [ch for ch in split if _is_emoji(ch)]
    assert len(split_cjk) >= 100
    assert len(split_emoji) >= 50
    for ch in split_cjk + split_emoji:
        ids = split[ch]
        # Each token carries only part of the character's bytes, so alone it decodes to U+FFFD...
        assert all("\ufffd" in tokenizer.decode([i]) for i in ids), ch
        # ...while the whole sequence gives the character back.
        assert tokenizer.decode(ids) == ch


def test_special_tokens(tokenizer: PreTrainedTokenizerBase, model_dir: Path) -> None:
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in SPECIAL_TOKENS}
    assert len(set(ids.values())) == len(SPECIAL_TOKENS)
    # Llama-3 style: appended after the learned vocabulary.
    assert sorted(ids.values()) == list(range(len(tokenizer) - len(SPECIAL_TOKENS), len(tokenizer)))
    for token, token_id in ids.items():
        assert tokenizer.encode(token, add_special_tokens=False) == [token_id]
    assert tokenizer.bos_token == BOS_TOKEN
    assert tokenizer.eos_token == EOT_TOKEN
    assert tokenizer.pad_token == PAD_TOKEN
    # The BOS is added by default and left out on request.
    plain = tokenizer.encode("hello", add_special_tokens=False)
    assert tokenizer.encode("hello") == [ids[BOS_TOKEN], *plain]
    assert tokenizer.decode([*plain, ids[EOT_TOKEN], ids[START_HEADER_TOKEN]], skip_special_tokens=True) == "hello"
    config = json.loads((model_dir / "config.json").read_text())
    generation = json.loads((model_dir / "generation_config.json").read_text())
    for conf in (config, generation):
        assert conf["bos_token_id"] == ids[BOS_TOKEN]
        assert conf["pad_token_id"] == ids[PAD_TOKEN]
        assert set(conf["eos_token_id"]) == {ids[EOT_TOKEN], ids[END_OF_TEXT_TOKEN]}


def test_tokenizer_config_loads_with_any_transformers(model_dir: Path) -> None:
    config = json.loads((model_dir / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == "PreTrainedTokenizerFast"
    assert config["chat_template"] == dev_model.CHAT_TEMPLATE_PATH.read_text(encoding="utf-8")
    assert config["clean_up_tokenization_spaces"] is False


# --- chat template -----------------------------------------------------------------------------------------

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather of a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
CONVERSATION = [
    {"role": "system", "content": "Answer briefly."},
    {"role": "user", "content": [{"type": "text", "text": "Weather in "}, {"type": "text", "text": "Paris?"}]},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "call_7", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
        ],
    },
    {"role": "tool", "tool_call_id": "call_7", "content": '{"temperature": 21}'},
    {"role": "assistant", "content": "It is 21 °C in Paris ☀️."},
    {"role": "user", "content": "Thanks!"},
]


def _header(role: str) -> str:
    return f"{START_HEADER_TOKEN}{role}{END_HEADER_TOKEN}\n\n"


def test_chat_template_renders_all_roles_and_tools(tokenizer: PreTrainedTokenizerBase) -> None:
    prompt = tokenizer.apply_chat_template(
        CONVERSATION, tools=[WEATHER_TOOL], add_generation_prompt=True, tokenize=False
    )
    assert prompt.startswith(BOS_TOKEN + _header("system") + "Answer briefly.")
    assert prompt.count(BOS_TOKEN) == 1
    assert "<tools>\n" + json.dumps(WEATHER_TOOL) + "\n</tools>" in prompt
    assert _header("user") + "Weather in Paris?" + EOT_TOKEN in prompt
    block = prompt.split(_header("assistant"))[1].split(EOT_TOKEN)[0]
    assert block.startswith("<tool_call>\n") and block.endswith("\n</tool_call>")  # hermes-style, as Qwen writes it
    call = json.loads(block.removeprefix("<tool_call>\n").removesuffix("\n</tool_call>"))
    assert call == {"name": "get_weather", "arguments": {"city": "Paris"}}
    assert _header("tool") + '<tool_response>\n{"temperature": 21}\n</tool_response>' + EOT_TOKEN in prompt
    assert _header("assistant") + "It is 21 °C in Paris ☀️." + EOT_TOKEN in prompt
    assert prompt.endswith(_header("user") + "Thanks!" + EOT_TOKEN + ASSISTANT_HEADER)
    # Every turn is closed: one <|eot_id|> per header except the open generation prompt.
    assert prompt.count(EOT_TOKEN) == prompt.count(START_HEADER_TOKEN) - 1


def test_chat_template_variants(tokenizer: PreTrainedTokenizerBase) -> None:
    without_prompt = tokenizer.apply_chat_template(CONVERSATION, tokenize=False)
    assert without_prompt.endswith("Thanks!" + EOT_TOKEN)
    # Tools without a system message still get a system block; tool calls may be given unnested, as dicts.
    messages = [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "tool_calls": [{"name": "get_weather", "arguments": {"city": "Hà Nội"}}]},
    ]
    prompt = tokenizer.apply_chat_template(messages, tools=[WEATHER_TOOL], tokenize=False)
    assert prompt.startswith(BOS_TOKEN + _header("system"))
    assert '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Hà Nội"}}\n</tool_call>' + EOT_TOKEN in prompt
    # No system message and no tools: no system block at all.
    bare = tokenizer.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False)
    assert bare == BOS_TOKEN + _header("user") + "Hi" + EOT_TOKEN
    with pytest.raises(Exception, match="Unsupported role"):
        tokenizer.apply_chat_template([{"role": "narrator", "content": "Once"}], tokenize=False)


def test_the_template_implies_the_hermes_parser_so_tools_work_with_auto() -> None:
    from gateway.openai.parsers import detect_parsers

    assert detect_parsers(dev_model.CHAT_TEMPLATE_PATH.read_text(encoding="utf-8")).tool == "hermes"


def test_tokenized_chat_has_a_single_bos(tokenizer: PreTrainedTokenizerBase) -> None:
    prompt = tokenizer.apply_chat_template(CONVERSATION, add_generation_prompt=True, tokenize=False)
    ids = tokenizer.encode(prompt, add_special_tokens=False)
    assert ids[0] == tokenizer.bos_token_id
    assert ids.count(tokenizer.bos_token_id) == 1
    assert tokenizer.decode(ids) == prompt


# --- model -------------------------------------------------------------------------------------------------


def test_model_is_small_and_generates(tokenizer: PreTrainedTokenizerBase, model_dir: Path) -> None:
    assert (model_dir / "model.safetensors").stat().st_size < 2_000_000
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    assert model.config.tie_word_embeddings
    assert model.config.vocab_size == len(tokenizer)
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Hello!"}], add_generation_prompt=True, tokenize=False
    )
    input_ids = torch.tensor([tokenizer.encode(prompt, add_special_tokens=False)])
    output = model.generate(
        input_ids, attention_mask=torch.ones_like(input_ids), max_new_tokens=6, min_new_tokens=6, do_sample=False
    )
    assert output.shape == (1, input_ids.shape[1] + 6)
    assert torch.equal(output[0, : input_ids.shape[1]], input_ids[0])
    assert int(output.max()) < len(tokenizer)


# --- cache, determinism, recipe ----------------------------------------------------------------------------


def test_cache_is_reused(tmp_path: Path, build_counter: list[Path]) -> None:
    first = ensure_dev_model(tmp_path)
    weights = first / "model.safetensors"
    stamp = weights.stat().st_mtime_ns
    second = ensure_dev_model(tmp_path)
    assert second == first
    assert len(build_counter) == 1
    assert weights.stat().st_mtime_ns == stamp
    assert first.name == f"dev-model-{dev_model_fingerprint()[:12]}"
    # Nothing but the model folder and the lock file is left behind.
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([first.name, ".dev-model.lock"])


def test_build_files_are_world_readable(model_dir: Path) -> None:
    assert model_dir.stat().st_mode & 0o005 == 0o005
    for path in model_dir.iterdir():
        assert path.stat().st_mode & 0o044 == 0o044, path.name


def test_builds_are_byte_identical_across_processes(tmp_path: Path, model_dir: Path) -> None:
    # A fresh interpreter has fresh hash seeds and thread pools: the strongest check of determinism.
    script = "import sys; from pathlib import Path; from gateway.devstack.dev_model import ensure_dev_model; "
    script += "print(ensure_dev_model(Path(sys.argv[1])))"
    result = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    other = Path(result.stdout.strip())
    assert result.stderr == ""  # a fresh process shows every one-time warning or progress bar
    assert other.name == model_dir.name
    assert _folder_bytes(other) == _folder_bytes(model_dir)


def test_builder_prints_nothing(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    ensure_dev_model(tmp_path)
    assert capfd.readouterr() == ("", "")


def test_recipe_change_builds_a_new_folder(
    tmp_path: Path, build_counter: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    original = ensure_dev_model(tmp_path)
    monkeypatch.setattr(dev_model, "RECIPE_VERSION", dev_model.RECIPE_VERSION + 1)
    bumped = ensure_dev_model(tmp_path)
    assert bumped != original
    assert original.is_dir() and bumped.is_dir()
    assert len(build_counter) == 2
    seed_before = dev_model_fingerprint()
    monkeypatch.setattr(dev_model, "PARAMS", dataclasses.replace(dev_model.PARAMS, seed=dev_model.PARAMS.seed + 1))
    assert dev_model_fingerprint() != seed_before


def test_fingerprint_covers_corpus_and_template(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    baseline = dev_model_fingerprint()
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for path in corpus_files():
        (corpus / path.name).write_bytes(path.read_bytes())
    monkeypatch.setattr(dev_model, "CORPUS_DIR", corpus)
    assert dev_model_fingerprint() == baseline
    (corpus / "extra.txt").write_text("one more line\n", encoding="utf-8")
    assert dev_model_fingerprint() != baseline
    template = tmp_path / "chat_template.jinja"
    template.write_text(dev_model.CHAT_TEMPLATE_PATH.read_text(encoding="utf-8") + " ", encoding="utf-8")
    monkeypatch.setattr(dev_model, "CORPUS_DIR", dev_model._DATA_DIR / "corpus")
    monkeypatch.setattr(dev_model, "CHAT_TEMPLATE_PATH", template)
    assert dev_model_fingerprint() != baseline


def test_default_cache_root_comes_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, build_counter: list[Path]
) -> None:
    monkeypatch.setenv("GATEWAY_CACHE_DIR", str(tmp_path / "from-env"))
    folder = ensure_dev_model()
    assert folder.parent == tmp_path / "from-env"
    assert len(build_counter) == 1


def test_concurrent_callers_build_once(tmp_path: Path, build_counter: list[Path]) -> None:
    results: list[Path] = []
    errors: list[BaseException] = []

    def call() -> None:
        try:
            results.append(ensure_dev_model(tmp_path))
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(set(results)) == 1 and len(results) == 4
    assert len(build_counter) == 1


def test_damaged_folder_and_leftovers_are_replaced(tmp_path: Path, build_counter: list[Path]) -> None:
    folder = ensure_dev_model(tmp_path)
    (folder / "model.safetensors").write_bytes(b"truncated")
    (folder / dev_model._STAMP_FILE).unlink()
    leftover = tmp_path / f".{folder.name}.killed.tmp"
    leftover.mkdir()
    assert ensure_dev_model(tmp_path) == folder
    assert len(build_counter) == 2
    assert not leftover.exists()
    AutoModelForCausalLM.from_pretrained(folder)  # the weights are whole again
