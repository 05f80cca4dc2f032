"""CPU stand-in for TensorRT-LLM's `tensorrt_llm` Triton model (Python backend, normally decoupled).

It declares the production tensor interface (config.pbtxt) and reproduces what clients observe of the real
engine, including its less convenient habits, so that a gateway tested against it handles the real thing:

- streaming: one response per new token, carrying only that token; non-streaming: one response with the
  prompt followed by the new tokens, unless `exclude_input_in_output` (request input, else model parameter);
- `sequence_length` and `num_output_tokens` count the tokens in that response (so a non-streaming response
  with the prompt counts the prompt too); `num_input_tokens` is the prompt length;
- `end_id` ends generation and is not returned (streaming then ends with an empty final response);
  stop words end it and are returned; `min_tokens` holds both off; bad words are never completed;
- no `runtime_top_k` and no `runtime_top_p` means greedy decoding whatever the temperature, and a request
  without `seed` uses seed 0: the same prompt gives the same text, as TensorRT-LLM does;
- a request with `stop`=true ends all queued and running requests with the same Triton request id (each sends a
  final response) and is itself answered with an empty final response; a stop for an id that has not arrived
  yet does nothing, so a request that reaches the engine after its stop runs to its end (dev_engine_core);
- a client cancel of a direct stream ends generation within one step (checked every 100 ms, like the real
  backend's `cancellation_check_period_ms`), also before the first token; a queued request that is stopped or
  cancelled is ended when it would have been admitted, as the executor does; through an ensemble Triton marks
  only the steps it schedules after the cancel as cancelled, so a generation that has started continues, as in
  production;
- a batch of N items in one request gets each item's responses; only the very last one is FINAL, and
  `batch_index` tells them apart;
- `num_return_sequences` N gives N sequences, each in its own responses tagged with `sequence_index`, and
  the FINAL flag once all of them are done (no per-sequence end marker), as the executor does;
- `return_log_probs` gives `output_log_probs` per response; `return_generation_logits` /
  `return_context_logits` give raw logits (hf engine only, as for an engine built with
  `--gather_generation_logits` / `--gather_context_logits`);
- beam search and the encoder and draft inputs are refused with an error naming the input; a prompt table
  (images from the dev `multimodal_encoders`) is taken by the scripted and synthetic engines: prompt ids from
  the vocabulary size on point at its rows, as in the real engine;
  guides are enforced by `hf` when configured and ignored otherwise; LoRA (synthetic engine only) needs the
  adapter's weights the first time and after an eviction from its cache of `lora_cache_adapters`, and changes
  the text per adapter.

Engines (parameter `engine`): `hf` runs a transformers model from `model_dir` with in-flight batching
(enforcing guided decoding when `guided_decoding_backend` and `xgrammar_tokenizer_info_path` are filled);
`synthetic` emits timed pseudo-random tokens (for load tests); `scripted` emits the text that the prompt's
last `<<script>>...<</script>>` span gives (dev_engine_scripted). Metrics (dev_engine_metrics): the real
backend's `nv_trt_llm_request_metrics`, and `dev_engine_running_requests` (queued + generating) and
`dev_engine_generated_tokens_total`.
"""

from __future__ import annotations

import json
import traceback
from typing import Any

import triton_python_backend_utils as pb_utils
from dev_engine_core import EngineCore
from dev_engine_io import error_response, is_stop_request, read_jobs
from dev_engine_job import RequestError
from dev_engine_metrics import EngineMetrics
from dev_engine_replies import CollectedReply, DecoupledReply, SenderPool

DEFAULT_MAX_NUM_ACTIVE = 64
# Threads making the blocking send IPC calls; more than a few gains nothing on a small machine.
SENDER_THREADS = 4


def _parameter(parameters: dict[str, Any], key: str, default: str) -> str:
    """A model parameter's string value; missing, empty or unfilled `${...}` values give `default`."""
    value = parameters.get(key, {}).get("string_value", "")
    return default if not value or value.startswith("${") else value


class TritonPythonModel:
    """The Triton entry points: build the engine, hand requests to it, stop it."""

    def initialize(self, args: dict[str, str]) -> None:
        """Read the parameters, load the engine and start its scheduler thread."""
        config = json.loads(args["model_config"])
        parameters = config.get("parameters", {})
        self._decoupled = pb_utils.using_decoupled_model_transaction_policy(config)
        self._exclude_input = _parameter(parameters, "exclude_input_in_output", "false").lower() == "true"
        kind = _parameter(parameters, "engine", "synthetic")
        model_dir = _parameter(parameters, "model_dir", "")
        max_num_active = int(_parameter(parameters, "max_num_active", str(DEFAULT_MAX_NUM_ACTIVE)))
        backend_labels = {"model": args["model_name"], "version": args["model_version"]}
        if sum(int(group.get("count", 1)) for group in config.get("instance_group", [])) > 1:
            # The real backend's labels would make the instances overwrite each other's values.
            backend_labels["instance"] = args["model_instance_name"]
        metrics = EngineMetrics({**backend_labels, "instance": args["model_instance_name"]}, backend_labels)
        self._engine: EngineCore
        if kind == "hf":
            from dev_engine_hf import HFEngine

            guided = (
                _parameter(parameters, "guided_decoding_backend", ""),
                _parameter(parameters, "xgrammar_tokenizer_info_path", ""),
            )
            self._engine = HFEngine(model_dir, max_num_active, metrics, guided)
        elif kind == "synthetic":
            from dev_engine_prefix_cache import PrefixCache
            from dev_engine_synthetic import SyntheticEngine

            ttft_ms = float(_parameter(parameters, "synthetic_ttft_ms", "50"))
            itl_ms = float(_parameter(parameters, "synthetic_itl_ms", "10"))
            per_response = int(_parameter(parameters, "synthetic_tokens_per_response", "1"))
            cache = PrefixCache(
                int(_parameter(parameters, "kv_block_size", "64")), int(_parameter(parameters, "kv_cache_blocks", "0"))
            )
            prefill_ms = float(_parameter(parameters, "synthetic_prefill_ms_per_token", "0"))
            self._engine = SyntheticEngine(
                model_dir,
                ttft_ms / 1000,
                itl_ms / 1000,
                max_num_active,
                metrics,
                per_response,
                cache,
                prefill_ms / 1000,
                int(_parameter(parameters, "lora_cache_adapters", "4")),
            )
        elif kind == "scripted":
            from dev_engine_scripted import ScriptedEngine

            itl_ms = float(_parameter(parameters, "synthetic_itl_ms", "10"))
            self._engine = ScriptedEngine(model_dir, itl_ms / 1000, max_num_active, metrics)
        else:
            raise pb_utils.TritonModelException(f"unknown engine {kind!r}; use 'hf', 'synthetic' or 'scripted'")
        self._senders = SenderPool(SENDER_THREADS)
        self._engine.start()
        pb_utils.Logger.log_info(
            f"dev tensorrt_llm: engine={kind} model_dir={model_dir or '-'} vocab={self._engine.vocab_size} "
            f"max_num_active={max_num_active} decoupled={self._decoupled} exclude_input={self._exclude_input}"
        )

    def execute(self, requests: list[Any]) -> list[Any] | None:
        """Queue the requests; decoupled: return at once, else wait for each request's single response."""
        if self._decoupled:
            for request in requests:
                reply = DecoupledReply(request.get_response_sender(), self._senders)
                immediate = self._start(request, reply)
                if immediate is not None:
                    reply.send(immediate, item_done=True)  # by a sender thread: execute() goes on at once
            return None
        replies = [CollectedReply() for _ in requests]
        immediate = [self._start(request, reply) for request, reply in zip(requests, replies, strict=True)]
        for reply, response in zip(replies, immediate, strict=True):
            if response is None:
                reply.ready.wait()
        return [
            response if response is not None else reply.response
            for reply, response in zip(replies, immediate, strict=True)
        ]

    def finalize(self) -> None:
        """Stop the scheduler thread; pending requests get an error response."""
        self._engine.shutdown()
        self._senders.close()

    def _start(self, request: Any, reply: DecoupledReply | CollectedReply) -> Any | None:
        """Queue a request's jobs, or return the response to send at once (stop requests, errors)."""
        request_id = request.request_id()
        if is_stop_request(request):
            if not request_id:
                return error_response("Trying to stop a request but request ID is not provided")
            self._engine.stop_request(request_id)
            # The real backend answers a stop request with a response that has no outputs.
            return pb_utils.InferenceResponse(output_tensors=[])
        try:
            jobs = read_jobs(
                request,
                reply,
                decoupled=self._decoupled,
                default_exclude=self._exclude_input,
                vocab_size=self._engine.vocab_size,
                takes_tables=self._engine.takes_prompt_tables,
            )
            for job in jobs:
                self._engine.prepare(job)
        except RequestError as exc:
            return error_response(str(exc))
        except Exception as exc:
            pb_utils.Logger.log_error(f"dev tensorrt_llm: cannot read request: {traceback.format_exc()}")
            return error_response(f"dev engine could not read the request: {exc!r}")
        reply.expect(len(jobs))
        self._engine.submit(jobs)
        return None
