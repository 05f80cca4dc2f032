"""Between Triton and the dev engine: requests become GenerationJobs, job progress becomes responses.

Shapes follow the TensorRT-LLM backend: every response is one batch item, `output_ids` is [1, beams, n],
`sequence_length` and the token counts are [1, 1]; only outputs the client requested are filled.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils
from dev_engine_job import GenerationJob, OutputSpec, RequestError, SamplingParams, parse_word_list

# Features of the real engine that the stand-in does not have: refusing them beats answering as if the
# input were absent. (`decoder_input_ids` is not among them: the real backend reads it only for
# encoder-decoder engines, and the ensemble's preprocessing always sends it.)
UNSUPPORTED_INPUTS = (
    "encoder_input_features",
    "draft_input_ids",
    "draft_logits",
    "context_phase_params",
    "cross_attention_mask",
    "mrope_rotary_cos_sin",
    "lookahead_window_size",
)
# Logits are the hf engine's alone (the synthetic engine has none); it refuses them itself.
LOGITS_FLAGS = ("return_context_logits", "return_generation_logits")
# TensorRT-LLM refuses more return sequences than this per request (executor limit used here too).
MAX_RETURN_SEQUENCES = 128


def error_response(message: str) -> Any:
    """An InferenceResponse carrying only an error."""
    return pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(message))


def _input(request: Any, name: str) -> np.ndarray | None:
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    return None if tensor is None else tensor.as_numpy()


def _scalar(request: Any, name: str, item: int, default: Any) -> Any:
    """One batch item's value of a scalar input (shape [batch] after Triton's reshape, or [batch, 1])."""
    array = _input(request, name)
    if array is None or array.size == 0:
        return default
    return array.reshape(array.shape[0], -1)[item, 0].item()


def _flag(request: Any, name: str, item: int = 0) -> bool:
    return bool(_scalar(request, name, item, False))


def is_stop_request(request: Any) -> bool:
    """Whether this is a `stop` request (read, like the real backend, from the first element)."""
    return _flag(request, "stop")


def requested_outputs(request: Any) -> frozenset[str]:
    """The outputs the client asked for (Triton lists all of them when the client names none)."""
    return frozenset(request.requested_output_names())


def _word_lists(request: Any, name: str, item: int) -> list[list[int]]:
    array = _input(request, name)
    if array is None or array.size == 0:
        return []
    words = array.reshape(array.shape[0], 2, -1)[item]
    return parse_word_list(words[0].tolist(), words[1].tolist(), name)


def _sampling(request: Any, item: int) -> SamplingParams:
    params = SamplingParams(
        temperature=float(_scalar(request, "temperature", item, 1.0)),
        top_k=int(_scalar(request, "runtime_top_k", item, 0)),
        top_p=max(0.0, float(_scalar(request, "runtime_top_p", item, 0.0))),
        seed=int(_scalar(request, "seed", item, 0)),
        repetition_penalty=float(_scalar(request, "repetition_penalty", item, 1.0)),
        presence_penalty=float(_scalar(request, "presence_penalty", item, 0.0)),
        frequency_penalty=float(_scalar(request, "frequency_penalty", item, 0.0)),
        min_tokens=int(_scalar(request, "min_tokens", item, 0)),
    )
    if params.temperature < 0:
        raise RequestError(f"temperature must be >= 0, got {params.temperature}")
    if params.top_k < 0:
        raise RequestError(f"runtime_top_k must be >= 0, got {params.top_k}")
    if params.top_p > 1:
        raise RequestError(f"runtime_top_p must be in (0, 1], got {params.top_p}")
    if params.repetition_penalty <= 0:
        raise RequestError(f"repetition_penalty must be > 0, got {params.repetition_penalty}")
    if params.min_tokens < 0:
        raise RequestError(f"min_tokens must be >= 0, got {params.min_tokens}")
    return params


def _check_supported(request: Any, item_count: int, decoupled: bool) -> None:
    used = [name for name in UNSUPPORTED_INPUTS if _input(request, name) is not None]
    if used:
        raise RequestError(f"the dev engine does not support these inputs: {', '.join(used)}")
    if item_count > 1 and not decoupled:
        raise RequestError("Batch size > 1 requires the tensorrt_llm model to use the decoupled transaction policy")
    if _flag(request, "streaming") and not decoupled:
        raise RequestError("Streaming is only supported if the model is deployed in decoupled mode")
    for item in range(item_count):
        if int(_scalar(request, "beam_width", item, 1)) != 1:
            raise RequestError("beam_width other than 1 (beam search) is not supported by the dev engine")
        sequences = int(_scalar(request, "num_return_sequences", item, 1))
        if not 1 <= sequences <= MAX_RETURN_SEQUENCES:
            raise RequestError(f"num_return_sequences must be in [1, {MAX_RETURN_SEQUENCES}], got {sequences}")
        if sequences > 1 and not decoupled:
            raise RequestError("num_return_sequences > 1 requires the decoupled transaction policy")


def _prompt_table(request: Any, item: int, takes_tables: bool) -> np.ndarray | None:
    """One item's prompt table ([rows, hidden]), checked against prompt_vocab_size like the engine does."""
    table = _input(request, "prompt_embedding_table")
    if table is None or table.size == 0:
        return None
    if not takes_tables:
        raise RequestError("this dev engine takes no prompt_embedding_table (the scripted and synthetic ones do)")
    rows = table.reshape(table.shape[0], -1, table.shape[-1])[item]
    declared = _scalar(request, "prompt_vocab_size", item, rows.shape[0])
    if int(declared) != rows.shape[0]:
        raise RequestError(f"prompt_vocab_size {declared} does not match the table's {rows.shape[0]} rows")
    return rows.astype(np.float32)


def read_jobs(
    request: Any, reply: Any, *, decoupled: bool, default_exclude: bool, vocab_size: int, takes_tables: bool = False
) -> list[GenerationJob]:
    """Split a Triton request into one GenerationJob per batch item; RequestError if it is invalid. Prompt ids
    from `vocab_size` on point at rows of the item's prompt table (images), when the engine takes tables."""
    ids = _input(request, "input_ids")
    if ids is None:
        raise RequestError("input_ids is not present in the request")
    ids = ids.reshape(ids.shape[0], -1)
    _check_supported(request, ids.shape[0], decoupled)
    names = requested_outputs(request)
    for name in ("output_ids", "sequence_length"):
        if name not in names:
            raise RequestError(f"{name} tensor must be present in the list of requested outputs")
    lengths = _input(request, "input_lengths").reshape(-1)
    outputs = OutputSpec(
        names=names,
        log_probs=_flag(request, "return_log_probs"),
        num_input_tokens=_flag(request, "return_num_input_tokens"),
        num_output_tokens=_flag(request, "return_num_output_tokens"),
        perf_metrics=_flag(request, "return_perf_metrics"),
        generation_logits=_flag(request, "return_generation_logits"),
        context_logits=_flag(request, "return_context_logits"),
        batch_size=ids.shape[0],
    )
    streaming = _flag(request, "streaming")
    jobs = []
    for item in range(ids.shape[0]):
        # Like the real backend, a single item uses all of input_ids; a batch is cut to input_lengths.
        prompt = ids[item].tolist() if ids.shape[0] == 1 else ids[item, : int(lengths[item])].tolist()
        if not prompt:
            raise RequestError("input_ids is empty")
        table = _prompt_table(request, item, takes_tables)
        limit = vocab_size + (0 if table is None else table.shape[0])
        if min(prompt) < 0 or max(prompt) >= limit:
            raise RequestError(f"input_ids must be ids in [0, {limit}), got {min(prompt)}..{max(prompt)}")
        max_new_tokens = int(_scalar(request, "request_output_len", item, 0))
        if max_new_tokens < 1:
            raise RequestError(f"request_output_len must be at least 1, got {max_new_tokens}")
        end_id = _scalar(request, "end_id", item, None)
        # Several return sequences: one job each, answered in their own responses tagged with sequence_index
        # (as the executor does); each draws from its own generator, so sampled sequences differ.
        sampling = _sampling(request, item)
        for sequence in range(int(_scalar(request, "num_return_sequences", item, 1))):
            jobs.append(
                GenerationJob(
                    request_id=request.request_id(),
                    prompt=prompt,
                    max_new_tokens=max_new_tokens,
                    streaming=streaming,
                    exclude_input=bool(_scalar(request, "exclude_input_in_output", item, default_exclude)),
                    sampling=sampling,
                    outputs=outputs,
                    reply=reply,
                    end_id=None if end_id is None else int(end_id),
                    stop_words=_word_lists(request, "stop_words_list", item),
                    bad_words=_word_lists(request, "bad_words_list", item),
                    embedding_bias=_embedding_bias(request, item, vocab_size),
                    lora_task_id=_scalar(request, "lora_task_id", item, None),
                    lora_weights=_lora_weights(request),
                    batch_index=item,
                    sequence_index=sequence,
                    guide=_guide(request, item),
                    prompt_table=table,
                )
            )
    return jobs


def _lora_weights(request: Any) -> bool:
    """Whether the request carries an adapter's weights and config (checked for shape like the backend does)."""
    weights, config = _input(request, "lora_weights"), _input(request, "lora_config")
    if weights is None and config is None:
        return False
    if weights is None or config is None:
        raise RequestError("lora_weights and lora_config must be sent together")
    if (
        config.shape[-1] != 3
        or config.reshape(-1, 3).shape[0] != weights.reshape(weights.shape[0], -1, weights.shape[-1]).shape[1]
    ):
        raise RequestError(f"lora_config {list(config.shape)} does not match lora_weights {list(weights.shape)}")
    return True


def _guide(request: Any, item: int) -> tuple[str, str] | None:
    """(guide type, guide) of a guided-decoding request; the engine decides what to do with it."""
    kind = _input(request, "guided_decoding_guide_type")
    if kind is None or kind.size == 0:
        return None
    guide = _input(request, "guided_decoding_guide")

    def text(array: np.ndarray) -> str:
        value = array.reshape(array.shape[0], -1)[item, 0]
        return value.decode("utf-8") if isinstance(value, bytes) else str(value)

    return text(kind), "" if guide is None or guide.size == 0 else text(guide)


def _embedding_bias(request: Any, item: int, vocab_size: int) -> np.ndarray | None:
    array = _input(request, "embedding_bias")
    if array is None or array.size == 0:
        return None
    bias = array.reshape(array.shape[0], -1)[item].astype(np.float32)
    if bias.size != vocab_size:
        raise RequestError(f"embedding_bias must have {vocab_size} values (the vocabulary size), got {bias.size}")
    return bias


def build_response(job: GenerationJob, tokens: list[int], log_probs: list[float]) -> Any:
    """The response for one batch item carrying `tokens` (new ones when streaming, else the whole output)."""
    names = job.outputs.names
    count = len(tokens)
    tensors = [
        pb_utils.Tensor("output_ids", np.array(tokens, dtype=np.int32).reshape(1, 1, count)),
        pb_utils.Tensor("sequence_length", np.array([[count]], dtype=np.int32)),
    ]
    if job.outputs.log_probs and "cum_log_probs" in names:
        tensors.append(pb_utils.Tensor("cum_log_probs", np.array([[sum(job.log_probs)]], dtype=np.float32)))
    if job.outputs.log_probs and "output_log_probs" in names:
        values = np.array(log_probs, dtype=np.float32).reshape(1, 1, len(log_probs))
        tensors.append(pb_utils.Tensor("output_log_probs", values))
    if job.outputs.num_input_tokens and "num_input_tokens" in names:
        tensors.append(pb_utils.Tensor("num_input_tokens", np.array([[len(job.prompt)]], dtype=np.int32)))
    if job.outputs.num_output_tokens and "num_output_tokens" in names:
        tensors.append(pb_utils.Tensor("num_output_tokens", np.array([[count]], dtype=np.int32)))
    if job.outputs.batch_size > 1 and "batch_index" in names:
        tensors.append(pb_utils.Tensor("batch_index", np.array([[job.batch_index]], dtype=np.int32)))
    if "sequence_index" in names:
        tensors.append(pb_utils.Tensor("sequence_index", np.array([[job.sequence_index]], dtype=np.int32)))
    if job.outputs.generation_logits and "generation_logits" in names:
        rows = job.take_generation_logits(len(log_probs))
        tensors.append(pb_utils.Tensor("generation_logits", rows.reshape(1, 1, rows.shape[0], -1)))
    if job.outputs.context_logits and "context_logits" in names and job.context_logits is not None:
        tensors.append(pb_utils.Tensor("context_logits", job.context_logits.reshape(1, *job.context_logits.shape)))
        job.context_logits = None  # sent once, with the first response
    if job.outputs.perf_metrics:
        tensors += _perf_tensors(job, names)
    return pb_utils.InferenceResponse(output_tensors=tensors)


def _perf_tensors(job: GenerationJob, names: frozenset[str]) -> list:
    """Timing outputs; the KV-cache and speculative-decoding ones are zero (the stand-in has neither)."""
    values = {
        "arrival_time_ns": (job.arrival_ns, np.int64),
        "first_scheduled_time_ns": (job.first_scheduled_ns, np.int64),
        "first_token_time_ns": (job.first_token_ns, np.int64),
        "last_token_time_ns": (job.last_token_ns, np.int64),
        "kv_cache_alloc_new_blocks": (job.kv_prompt_blocks - job.kv_reused_blocks, np.int32),
        "kv_cache_reused_blocks": (job.kv_reused_blocks, np.int32),
        "kv_cache_alloc_total_blocks": (job.kv_prompt_blocks, np.int32),
        "acceptance_rate": (0.0, np.float32),
        "total_accepted_draft_tokens": (0, np.int32),
        "total_draft_tokens": (0, np.int32),
    }
    return [
        pb_utils.Tensor(name, np.array([[value]], dtype=dtype))
        for name, (value, dtype) in values.items()
        if name in names
    ]
