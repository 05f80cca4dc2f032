"""Dev models that speak like real ones: a real family's tokenizer, our chat template for it, random weights.

`DevStackOptions(family=...)` picks one: `dev` (the default trtllm-dev model of dev_model.py) or one of
FAMILIES. Each family model is a tiny random Llama over the family's whole vocabulary (the tokenizer of
family_tokenizers.py), built into the cache root like the dev model and rebuilt when its recipe changes.
A random model never calls a tool by itself: the `scripted` engine makes it say what a test needs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.devstack import family_tokenizers
from gateway.devstack.dev_model import DevModelParams

if TYPE_CHECKING:
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

# Bump whenever the build steps change in a way the fingerprinted inputs below do not capture.
FAMILY_RECIPE_VERSION = 2  # 2: mistral without the legacy space after special tokens
TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
# Tiny, because the embedding is vocab x hidden (Qwen: 151669 x 32 floats = 19 MB).
FAMILY_PARAMS = DevModelParams(
    hidden_size=32, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1, intermediate_size=64
)


@dataclass(frozen=True)
class Family:
    """A model family: where its tokenizer comes from and which tokens play which part."""

    name: str
    source: Callable[[], Path]
    build: Callable[[Path], Tokenizer]
    bos: str | None
    eos: str  # ends a chat turn; the tokenizer's eos (the ensemble's default end_id, xgrammar's stop token)
    extra_eos: tuple[str, ...]  # further tokens that end generation in the model's generation config
    pad: str
    model_max_length: int = 32768

    @property
    def model_name(self) -> str:
        """The served model name."""
        return f"trtllm-dev-{self.name}"

    @property
    def template_path(self) -> Path:
        """Our Jinja chat template for this family."""
        return TEMPLATES_DIR / f"{self.name}.jinja"


FAMILIES: dict[str, Family] = {
    family.name: family
    for family in (
        Family(
            "qwen",
            family_tokenizers.qwen_source,
            family_tokenizers.build_qwen,
            bos=None,
            eos="<|im_end|>",
            extra_eos=("<|endoftext|>",),
            pad="<|endoftext|>",
        ),
        Family(
            "deepseek",
            family_tokenizers.deepseek_source,
            family_tokenizers.build_deepseek,
            bos="<｜begin▁of▁sentence｜>",
            eos="<｜end▁of▁sentence｜>",
            extra_eos=(),
            pad="<｜end▁of▁sentence｜>",
        ),
        Family(
            "mistral",
            family_tokenizers.mistral_source,
            family_tokenizers.build_mistral,
            bos="<s>",
            eos="</s>",
            extra_eos=(),
            pad="</s>",
        ),
    )
}


def family(name: str) -> Family:
    """The family called `name`; ValueError naming the known ones otherwise."""
    try:
        return FAMILIES[name]
    except KeyError:
        raise ValueError(f"unknown dev model family {name!r}; use 'dev' or one of {', '.join(FAMILIES)}") from None


def served_model_name(name: str) -> str:
    """The model name of family `name` (`dev`: trtllm-dev)."""
    from gateway.devstack.dev_model import DEV_MODEL_NAME

    return DEV_MODEL_NAME if name == "dev" else family(name).model_name


def family_fingerprint(spec: Family) -> str:
    """The sha256 of everything that determines a family model: recipe, parameters, source file, template."""
    digest = hashlib.sha256()
    recipe = {
        "recipe_version": FAMILY_RECIPE_VERSION,
        "params": dataclasses.asdict(FAMILY_PARAMS),
        "tokens": [spec.bos, spec.eos, list(spec.extra_eos), spec.pad, spec.model_max_length],
    }
    digest.update(json.dumps(recipe, sort_keys=True).encode())
    for path in (spec.source(), spec.template_path):
        data = path.read_bytes()
        digest.update(f"\0{path.name}\0{len(data)}\0".encode())
        digest.update(data)
    return digest.hexdigest()


def ensure_family_model(name: str, cache_dir: Path | None = None) -> Path:
    """The model folder of family `name` (`dev` gives the dev model), built first if needed."""
    from gateway.devstack.dev_model import ensure_built, ensure_dev_model

    if name == "dev":
        return ensure_dev_model(cache_dir)
    spec = family(name)
    return ensure_built(cache_dir, f"dev-{name}", family_fingerprint(spec), lambda folder: _build(spec, folder))


def family_tokenizer(spec: Family) -> PreTrainedTokenizerFast:
    """The family's tokenizer with our chat template, as saved into its model folder."""
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_object=spec.build(spec.source()),
        bos_token=spec.bos,
        eos_token=spec.eos,
        pad_token=spec.pad,
        model_max_length=spec.model_max_length,
        clean_up_tokenization_spaces=False,
        chat_template=spec.template_path.read_text(encoding="utf-8"),
    )


def _build(spec: Family, folder: Path) -> None:
    from gateway.devstack.dev_model import random_llama, save_model_folder

    tokenizer = family_tokenizer(spec)
    model = random_llama(tokenizer, FAMILY_PARAMS, spec.bos, [spec.eos, *spec.extra_eos], spec.pad)
    save_model_folder(folder, tokenizer, model)
