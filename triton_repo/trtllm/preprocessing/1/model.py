"""Triton Python model `preprocessing`: prompt and word lists -> token ids for `tensorrt_llm`.

Same tensors and behaviour as TensorRT-LLM's preprocessing model:
- QUERY (and DECODER_QUERY) is encoded with `add_special_tokens` from the model parameter;
- images (`IMAGE_URL` data: URLs, or `IMAGE_BYTES` pixels) when `multimodal_model_path` names a vision engine:
  see preprocessing_vision.py (each image's prompt-table ids where its placeholder is, pixels for the encoder);
- END_ID / PAD_ID default to the tokenizer's eos / pad token (pad falls back to eos);
- STOP_WORDS_DICT / BAD_WORDS_DICT become the engine's [2, L] word-list format, each string encoded on its own
  without special tokens (so a stop string tokenized differently in context is not matched by the engine).
Runs unchanged in NVIDIA's trtllm-python-py3 image and in the CPU dev stack: numpy, transformers, pb_utils only.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils
from preprocessing_vision import VisionPreprocessor, decode_image, images_from_pixels
from transformers import AutoTokenizer

UNSUPPORTED_INPUTS = ("IMAGES", "VIDEO_BYTES")
TRUE_WORDS = {"true", "1", "t", "y", "yes"}
FALSE_WORDS = {"false", "0", "f", "n", "no"}


def parameter(config: dict[str, Any], key: str) -> str | None:
    """A string parameter of the model config; None when missing, empty or an unfilled `${...}` placeholder."""
    value = config.get("parameters", {}).get(key, {}).get("string_value", "")
    return None if value == "" or value.startswith("${") else value


def bool_parameter(config: dict[str, Any], key: str, default: bool) -> bool:
    """A boolean parameter (true/false/1/0/yes/no/t/f/y/n); `default` when unset or unreadable."""
    value = parameter(config, key)
    if value is None:
        return default
    if value.lower() in TRUE_WORDS | FALSE_WORDS:
        return value.lower() in TRUE_WORDS
    pb_utils.Logger.log_warn(f"parameter {key}={value!r} is not a boolean; using {default}")
    return default


def strings(array: np.ndarray) -> list[str]:
    """Decode a row of a BYTES tensor into Python strings."""
    return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in array.reshape(-1)]


class TritonPythonModel:
    """Tokenizer step of the ensemble and of tensorrt_llm_bls."""

    def initialize(self, args: dict[str, str]) -> None:
        """Load the tokenizer named by the `tokenizer_dir` parameter."""
        config = json.loads(args["model_config"])
        tokenizer_dir = parameter(config, "tokenizer_dir")
        if tokenizer_dir is None:
            raise pb_utils.TritonModelException("preprocessing: the tokenizer_dir parameter is not set")
        self.add_special_tokens = bool_parameter(config, "add_special_tokens", default=True)
        self.tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir, legacy=False, trust_remote_code=True)
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        # None when the tokenizer has no eos: requests must then send END_ID themselves.
        self.end_id = self.tokenizer.eos_token_id
        self.pad_id = self.tokenizer.pad_token_id
        self.vocab_size = self.tokenizer.vocab_size
        self.bias_size = len(self.tokenizer)
        self.vision: VisionPreprocessor | None = None
        vision_engine = parameter(config, "multimodal_model_path")
        if vision_engine is not None:
            self.vision = VisionPreprocessor.load(
                vision_engine,
                parameter(config, "engine_dir") or vision_engine,
                parameter(config, "hf_model_path") or tokenizer_dir,
                int(parameter(config, "max_num_images") or 1),
                self.add_special_tokens,
            )
            self.vocab_size = self.vision.vocab_size or self.vocab_size

    def execute(self, requests: list[Any]) -> list[Any]:
        """One response per request; a request's batch may hold several prompts."""
        responses = []
        for request in requests:
            try:
                responses.append(pb_utils.InferenceResponse(output_tensors=self._process(request)))
            except Exception as exc:  # a bad request must not fail the others of the batch
                responses.append(
                    pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(f"preprocessing: {exc}"))
                )
        return responses

    def _process(self, request: Any) -> list[Any]:
        def optional(name: str) -> np.ndarray | None:
            tensor = pb_utils.get_input_tensor_by_name(request, name)
            return None if tensor is None else tensor.as_numpy()

        given = [name for name in UNSUPPORTED_INPUTS if optional(name) is not None]
        if given:
            raise ValueError(f"inputs {', '.join(given)} are not supported by this preprocessing")

        query = optional("QUERY")
        batch = query.shape[0]
        end_id = self._ids_or_default(optional("END_ID"), self.end_id, batch, "END_ID")
        pad_id = self._ids_or_default(optional("PAD_ID"), self.pad_id, batch, "PAD_ID")

        images = self._images(optional("IMAGE_URL"), optional("IMAGE_BYTES"), batch)
        vision_tensors: dict[str, np.ndarray] = {}
        if images is not None:
            assert self.vision is not None
            ids, vision_tensors = self.vision.prepare(strings(query[0])[0], images, self._encode_piece)
            input_ids, input_lengths = np.array([ids], np.int32), np.array([[len(ids)]], np.int32)
        else:
            input_ids, input_lengths = self._encode_prompts(query, int(pad_id[0, 0]))
        decoder_query = optional("DECODER_QUERY")
        if decoder_query is None:
            # Decoder-only engines ignore these; NVIDIA's model sends one pad token per item too.
            decoder_ids, decoder_lengths = pad_id.copy(), np.ones((batch, 1), np.int32)
        else:
            decoder_ids, decoder_lengths = self._encode_prompts(decoder_query, int(pad_id[0, 0]))

        outputs = [
            pb_utils.Tensor("INPUT_ID", input_ids),
            pb_utils.Tensor("REQUEST_INPUT_LEN", input_lengths),
            pb_utils.Tensor("DECODER_INPUT_ID", decoder_ids),
            pb_utils.Tensor("REQUEST_DECODER_INPUT_LEN", decoder_lengths),
            pb_utils.Tensor("REQUEST_OUTPUT_LEN", optional("REQUEST_OUTPUT_LEN").astype(np.int32)),
            pb_utils.Tensor("BAD_WORDS_IDS", self._word_lists(optional("BAD_WORDS_DICT"), batch)),
            pb_utils.Tensor("STOP_WORDS_IDS", self._word_lists(optional("STOP_WORDS_DICT"), batch)),
            pb_utils.Tensor(
                "EMBEDDING_BIAS",
                self._embedding_bias(optional("EMBEDDING_BIAS_WORDS"), optional("EMBEDDING_BIAS_WEIGHTS"), batch),
            ),
            pb_utils.Tensor("OUT_END_ID", end_id),
            pb_utils.Tensor("OUT_PAD_ID", pad_id),
        ]
        outputs += [pb_utils.Tensor(name, value) for name, value in vision_tensors.items()]
        extra_id = optional("PROMPT_TABLE_EXTRA_ID")
        if extra_id is not None:
            # Marks the prompt-table (fake, >= vocab size) positions for KV-cache reuse with p-tuning.
            extra = np.where(input_ids >= self.vocab_size, extra_id.reshape(batch, 1), 0).astype(np.uint64)
            outputs.append(pb_utils.Tensor("OUT_PROMPT_TABLE_EXTRA_IDS", extra))
        return outputs

    def _images(self, urls: np.ndarray | None, pixels: np.ndarray | None, batch: int) -> list[Any] | None:
        """The request's images (IMAGE_URL data: URLs or IMAGE_BYTES pixels), None when it has none."""
        if urls is None and pixels is None:
            return None
        if self.vision is None:
            raise ValueError("this model takes no images: its preprocessing has no multimodal_model_path")
        if batch != 1:
            raise ValueError("a request with images must hold one prompt (batch size 1)")
        if urls is not None:
            return [decode_image(value) for value in urls.reshape(-1) if len(value)]
        assert pixels is not None
        return images_from_pixels(pixels.reshape(-1, *pixels.shape[-3:]))

    def _encode_piece(self, text: str, starts_prompt: bool) -> list[int]:
        """A piece of a prompt cut at its images: special tokens (BOS) only at the start, if configured."""
        return self.tokenizer.encode(text, add_special_tokens=starts_prompt and self.add_special_tokens)

    @staticmethod
    def _ids_or_default(given: np.ndarray | None, default: int | None, batch: int, name: str) -> np.ndarray:
        if given is not None:
            return given.astype(np.int32).reshape(batch, 1)
        if default is None:
            raise ValueError(f"the tokenizer defines no default for {name}; send {name.lower()}")
        return np.full((batch, 1), default, np.int32)

    def _encode_prompts(self, prompts: np.ndarray, pad_id: int) -> tuple[np.ndarray, np.ndarray]:
        encoded = [
            self.tokenizer.encode(text, add_special_tokens=self.add_special_tokens)
            for text in (strings(row)[0] for row in prompts)
        ]
        lengths = np.array([[len(ids)] for ids in encoded], np.int32)
        # Right-padded to the longest prompt; the engine reads only input_lengths ids of each row.
        ids = np.full((len(encoded), int(lengths.max(initial=0))), pad_id, np.int32)
        for row, token_ids in enumerate(encoded):
            ids[row, : len(token_ids)] = token_ids
        return ids, lengths

    def _word_lists(self, words: np.ndarray | None, batch: int) -> np.ndarray:
        """Strings per batch item -> int32 [batch, 2, L]: flat ids (0-padded), cumulative ends (-1-padded)."""
        if words is None:
            return np.zeros((batch, 2, 0), np.int32)
        per_item: list[tuple[list[int], list[int]]] = []
        for row in words:
            flat: list[int] = []
            ends: list[int] = []
            for word in strings(row):
                ids = self.tokenizer.encode(word, add_special_tokens=False)
                if ids:  # an empty string (or one that encodes to nothing) is no stop word
                    flat.extend(ids)
                    ends.append(len(flat))
            per_item.append((flat, ends))
        width = max(1, *(len(flat) for flat, _ in per_item))
        result = np.zeros((len(per_item), 2, width), np.int32)
        result[:, 1, :] = -1
        for item, (flat, ends) in enumerate(per_item):
            result[item, 0, : len(flat)] = flat
            result[item, 1, : len(ends)] = ends
        return result

    def _embedding_bias(self, words: np.ndarray | None, weights: np.ndarray | None, batch: int) -> np.ndarray:
        """Per-item vocabulary bias: each word's token ids get its weight; [batch, 0] when not given."""
        if words is None or weights is None:
            return np.zeros((batch, 0), np.float32)
        bias = np.zeros((words.shape[0], self.bias_size), np.float32)
        for item, (row_words, row_weights) in enumerate(zip(words, weights, strict=True)):
            texts = strings(row_words)
            if len(texts) != row_weights.size:
                raise ValueError("embedding_bias_words and embedding_bias_weights must have the same length")
            for word, weight in zip(texts, row_weights.reshape(-1), strict=True):
                # Without special tokens: biasing BOS along with the word is never what the caller meant.
                ids = self.tokenizer.encode(word, add_special_tokens=False)
                np.add.at(bias[item], ids, weight)
        return bias
