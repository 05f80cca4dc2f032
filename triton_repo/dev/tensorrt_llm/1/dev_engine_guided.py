"""Guided decoding for the `hf` dev engine: xgrammar masks the logits each step, as TensorRT-LLM does.

Active only when the model parameters say so, exactly like the real backend: `guided_decoding_backend` is
`xgrammar` and `xgrammar_tokenizer_info_path` names the JSON file NVIDIA's tooling writes (`encoded_vocab`,
`tokenizer_str`, `stop_token_ids`). Otherwise guides are silently ignored. Per request:

- `json` compiles xgrammar's built-in JSON grammar, `json_schema` the schema (xgrammar's defaults, so
  whitespace is flexible: `any_whitespace` on, as the TensorRT-LLM guided decoder leaves it), `regex` and
  `ebnf_grammar` the expression / grammar; any other type is silently dropped (the request runs unguided);
- a guide that does not compile is refused with an error naming the guide type;
- each step, the tokens the grammar cannot accept next are masked before sampling; once the grammar is
  complete only the stop token (the tokenizer's eos) is allowed, and a grammar that has terminated ends the
  request (with end_id, the usual way: the stop token is end_id).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from dev_engine_job import RequestError

BACKEND = "xgrammar"
GUIDE_TYPES = ("json", "json_schema", "regex", "ebnf_grammar")


class GuideMatcher:
    """One request's position in its grammar."""

    def __init__(self, compiled: Any) -> None:
        import xgrammar

        self._xgrammar = xgrammar
        self._matcher = xgrammar.GrammarMatcher(compiled)
        self._bitmask = xgrammar.allocate_token_bitmask(1, compiled.tokenizer_info.vocab_size)

    def mask(self, logits: torch.Tensor) -> None:
        """Set the logits of tokens the grammar rejects next to -inf (in place, one row)."""
        self._matcher.fill_next_token_bitmask(self._bitmask)
        with torch.inference_mode():  # the logits come from an inference-mode forward pass
            self._xgrammar.apply_token_bitmask_inplace(logits.unsqueeze(0), self._bitmask)

    def accept(self, token: int) -> None:
        """Advance past the sampled token (it was allowed by the mask)."""
        if not self._matcher.accept_token(token):
            raise RuntimeError(f"the grammar rejected token {token}")

    @property
    def terminated(self) -> bool:
        """Whether the grammar is complete and its stop token was accepted."""
        return self._matcher.is_terminated()


class GuidedDecoding:
    """An xgrammar compiler over the served vocabulary, built from the tokenizer info file."""

    def __init__(self, info_path: str, vocab_size: int) -> None:
        import xgrammar

        info = json.loads(Path(info_path).read_text(encoding="utf-8"))
        # The same detection TensorRT-LLM's guided decoder makes from the serialised tokenizer.
        metadata = xgrammar.TokenizerInfo._detect_metadata_from_hf(info["tokenizer_str"])
        tokenizer_info = xgrammar.TokenizerInfo(
            info["encoded_vocab"],
            vocab_type=metadata["vocab_type"],
            vocab_size=vocab_size,
            stop_token_ids=info["stop_token_ids"],
            add_prefix_space=metadata["add_prefix_space"],
        )
        self._compiler = xgrammar.GrammarCompiler(tokenizer_info, max_threads=1)
        self.stop_token_ids = list(info["stop_token_ids"])

    @classmethod
    def from_parameters(cls, backend: str, info_path: str, vocab_size: int) -> GuidedDecoding | None:
        """The guided decoder the parameters ask for, or None when they leave it off (guides are ignored)."""
        if backend != BACKEND or not info_path:
            return None
        return cls(info_path, vocab_size)

    def compile(self, guide_type: str, guide: str) -> Any | None:
        """The compiled grammar of a guide; None for an unknown guide type (dropped, as the real backend does)."""
        if guide_type not in GUIDE_TYPES:
            return None
        try:
            if guide_type == "json":
                return self._compiler.compile_builtin_json_grammar()
            if guide_type == "json_schema":
                return self._compiler.compile_json_schema(guide)
            if guide_type == "regex":
                return self._compiler.compile_regex(guide)
            return self._compiler.compile_grammar(guide)
        except Exception as exc:
            raise RequestError(f"guided_decoding_guide is not a valid {guide_type} guide: {exc}") from exc
