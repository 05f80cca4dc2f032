"""Deterministic builder of the tiny "trtllm-dev" model: a byte-level BPE tokenizer and a random Llama.

Nothing is downloaded: the tokenizer is trained on the corpus shipped next to this module and the
weights are drawn from a seeded generator, so every machine builds the same bytes. The result is a
plain Hugging Face folder that both the Triton Python-backend models and the gateway load with
``AutoTokenizer.from_pretrained`` / ``AutoModelForCausalLM.from_pretrained``.
"""

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.devstack.dev_stack import default_cache_root

if TYPE_CHECKING:
    from transformers import LlamaForCausalLM, PreTrainedTokenizerFast

logger = logging.getLogger(__name__)

DEV_MODEL_NAME = "trtllm-dev"
# Bump whenever the build steps change in a way the fingerprinted inputs below do not capture.
RECIPE_VERSION = 2  # 2: xgrammar_tokenizer_info.json

_DATA_DIR = Path(__file__).resolve().parent
CORPUS_DIR = _DATA_DIR / "corpus"
CHAT_TEMPLATE_PATH = _DATA_DIR / "chat_template.jinja"

BOS_TOKEN = "<|begin_of_text|>"
END_OF_TEXT_TOKEN = "<|end_of_text|>"
START_HEADER_TOKEN = "<|start_header_id|>"
END_HEADER_TOKEN = "<|end_header_id|>"
EOT_TOKEN = "<|eot_id|>"
PAD_TOKEN = "<|pad|>"
SPECIAL_TOKENS = (BOS_TOKEN, END_OF_TEXT_TOKEN, START_HEADER_TOKEN, END_HEADER_TOKEN, EOT_TOKEN, PAD_TOKEN)

# Written last into a finished build; a folder without the matching stamp is not trusted.
_STAMP_FILE = "dev_model_fingerprint.txt"
_LOCK_FILE = ".dev-model.lock"


@dataclasses.dataclass(frozen=True)
class DevModelParams:
    """Knobs of the dev model; all of them feed the fingerprint."""

    # Learned tokens + special tokens; small enough that most CJK characters and emoji stay split into bytes.
    vocab_size: int = 2560
    hidden_size: int = 64
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    intermediate_size: int = 128
    max_position_embeddings: int = 4096
    seed: int = 20240501


PARAMS = DevModelParams()


def corpus_files() -> list[Path]:
    """Return the tokenizer training corpus files in a stable (sorted) order."""
    return sorted(CORPUS_DIR.glob("*.txt"))


def dev_model_fingerprint() -> str:
    """Return the sha256 hex digest of everything that determines the built model."""
    digest = hashlib.sha256()
    recipe = {"recipe_version": RECIPE_VERSION, "params": dataclasses.asdict(PARAMS)}
    digest.update(json.dumps(recipe, sort_keys=True).encode())
    # Length-prefix every file so that moving bytes between files changes the digest.
    for path in [*corpus_files(), CHAT_TEMPLATE_PATH]:
        data = path.read_bytes()
        digest.update(f"\0{path.name}\0{len(data)}\0".encode())
        digest.update(data)
    return digest.hexdigest()


def ensure_dev_model(cache_dir: Path | None = None) -> Path:
    """Return the dev model folder under ``cache_dir``, building it first if no build of this recipe exists."""
    return ensure_built(cache_dir, "dev-model", dev_model_fingerprint(), _build)


def ensure_built(cache_dir: Path | None, prefix: str, fingerprint: str, build: Callable[[Path], None]) -> Path:
    """Return `<cache root>/<prefix>-<fingerprint[:12]>`, running `build(staging folder)` first unless a finished
    build with this fingerprint exists (one builder at a time; readers never see a half-built folder)."""
    root = Path(cache_dir) if cache_dir is not None else default_cache_root()
    target = root / f"{prefix}-{fingerprint[:12]}"
    if _is_complete(target, fingerprint):
        return target
    root.mkdir(parents=True, exist_ok=True)
    with _exclusive_lock(root / _LOCK_FILE):
        # Another process may have finished the same build while we were waiting for the lock.
        if not _is_complete(target, fingerprint):
            _build_atomically(target, fingerprint, build)
    return target


def _is_complete(folder: Path, fingerprint: str) -> bool:
    try:
        return (folder / _STAMP_FILE).read_text(encoding="utf-8") == fingerprint
    except OSError:
        return False


@contextlib.contextmanager
def _exclusive_lock(lock_path: Path) -> Iterator[None]:
    with lock_path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _build_atomically(target: Path, fingerprint: str, build: Callable[[Path], None]) -> None:
    # Only lock holders build, so staging folders found now were left by a killed build.
    for leftover in target.parent.glob(f".{target.name}.*.tmp"):
        shutil.rmtree(leftover, ignore_errors=True)
    # Build in a sibling folder so the rename stays on one file system and readers never see half a model.
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        started = time.perf_counter()
        logger.info("building %s", target)
        build(staging)
        (staging / _STAMP_FILE).write_text(fingerprint, encoding="utf-8")
        # mkdtemp creates 0700; Triton may run as another user (e.g. in a container) and must read it.
        staging.chmod(0o755)
        if target.exists():
            # A damaged or unstamped leftover; we hold the lock, so nobody else is using it.
            shutil.rmtree(target)
        os.replace(staging, target)
        logger.info("built %s in %.2f s", target.name, time.perf_counter() - started)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _build(folder: Path) -> None:
    tokenizer = _build_tokenizer()
    eos = [EOT_TOKEN, END_OF_TEXT_TOKEN]  # chat turns end with <|eot_id|>, raw completions with <|end_of_text|>
    save_model_folder(folder, tokenizer, random_llama(tokenizer, PARAMS, BOS_TOKEN, eos, PAD_TOKEN))


def save_model_folder(folder: Path, tokenizer: "PreTrainedTokenizerFast", model: "LlamaForCausalLM") -> None:
    """Write a Hugging Face folder: tokenizer (chat template inside), weights and xgrammar's tokenizer info."""
    from gateway.devstack.tokenizer_info import write_tokenizer_info

    # The legacy layout keeps the chat template inside tokenizer_config.json, where every reader finds it.
    tokenizer.save_pretrained(folder, save_jinja_files=False)
    _make_tokenizer_config_portable(folder / "tokenizer_config.json")
    with _progress_bars_disabled():
        model.save_pretrained(folder, safe_serialization=True)
    write_tokenizer_info(tokenizer, folder)
    for path in folder.iterdir():
        # safetensors writes 0600 files; other users (e.g. a Triton container) must be able to read them.
        path.chmod(0o644)


def _build_tokenizer() -> "PreTrainedTokenizerFast":
    # Heavy imports stay inside the build so that cache hits and fingerprinting stay cheap for the CLI.
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=PARAMS.vocab_size - len(SPECIAL_TOKENS),
        # All 256 bytes up front: any text encodes, and unseen characters fall back to byte tokens.
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator([path.read_text(encoding="utf-8") for path in corpus_files()], trainer=trainer)
    # Special tokens go after the learned vocabulary, as in Llama 3.
    tokenizer.add_special_tokens(list(SPECIAL_TOKENS))
    tokenizer.post_processor = processors.Sequence(
        [
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(
                single=f"{BOS_TOKEN} $A",
                pair=f"{BOS_TOKEN} $A {BOS_TOKEN} $B",
                special_tokens=[(BOS_TOKEN, tokenizer.token_to_id(BOS_TOKEN))],
            ),
        ]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=BOS_TOKEN,
        eos_token=EOT_TOKEN,
        pad_token=PAD_TOKEN,
        model_max_length=PARAMS.max_position_embeddings,
        # transformers 4.x would otherwise "clean up" " ?" into "?" on decode and break exact round trips.
        clean_up_tokenization_spaces=False,
        chat_template=CHAT_TEMPLATE_PATH.read_text(encoding="utf-8"),
    )


def _make_tokenizer_config_portable(path: Path) -> None:
    # transformers 5 records its internal "TokenizersBackend" class, which transformers 4.x (e.g. in a Triton
    # container) cannot resolve; "PreTrainedTokenizerFast" means the same thing to both.
    config = json.loads(path.read_text(encoding="utf-8"))
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    path.write_text(json.dumps(config, indent=2, ensure_ascii=False, sort_keys=True) + "\n", encoding="utf-8")


def random_llama(
    tokenizer: "PreTrainedTokenizerFast", params: DevModelParams, bos: str | None, eos: list[str], pad: str
) -> "LlamaForCausalLM":
    """A seeded random-weight Llama over `tokenizer`'s whole vocabulary; every `eos` token stops generation."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    bos_id = None if bos is None else int(tokenizer.convert_tokens_to_ids(bos))  # type: ignore[arg-type]
    pad_id = int(tokenizer.convert_tokens_to_ids(pad))  # type: ignore[arg-type]
    eos_ids = tokenizer.convert_tokens_to_ids(eos)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=params.hidden_size,
        num_hidden_layers=params.num_hidden_layers,
        num_attention_heads=params.num_attention_heads,
        num_key_value_heads=params.num_key_value_heads,
        intermediate_size=params.intermediate_size,
        max_position_embeddings=params.max_position_embeddings,
        bos_token_id=bos_id,
        eos_token_id=eos_ids,
        pad_token_id=pad_id,
        tie_word_embeddings=True,
        dtype="float32",
    )
    # fork_rng keeps the caller's global torch RNG state untouched by our fixed seed.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(params.seed)
        model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(bos_token_id=bos_id, eos_token_id=eos_ids, pad_token_id=pad_id)
    return model.eval()


@contextlib.contextmanager
def _progress_bars_disabled() -> Iterator[None]:
    # save_pretrained draws a tqdm bar on stderr; the builder must stay silent apart from logging.
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()
