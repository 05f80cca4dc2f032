"""The `scripted` dev engine: it says what the prompt tells it to, in the served tokenizer's real tokens.

A random model never calls a tool or thinks aloud; tests of tool-call and reasoning parsers need a model that
does, with real token boundaries and real special tokens. This engine decodes each prompt with the tokenizer
in `model_dir` (special tokens kept as text) and takes the text between the last `<<script>>` and the first
`<</script>>` after it. That text is tokenized with the same tokenizer (no BOS/EOS added; special tokens
written in it, e.g. Qwen's `<tool_call>` or Mistral's `[TOOL_CALLS]`, become their single ids) and emitted one
token per step, one step every `synthetic_itl_ms`. After the last scripted token the request ends as on
`end_id` (not returned; a streaming request gets an empty final response).

Marker format, e.g. as an OpenAI user message (the rest of the prompt is ignored):

    <<script>><tool_call>
    {"name": "get_weather", "arguments": {"city": "Paris"}}
    </tool_call><</script>>

Images: `<<images>>` in the script says the colours of the prompt's images (rows of its prompt table, from the
dev `multimodal_encoders`), in prompt order, as `#rrggbb` separated by spaces (dev_engine_images), so that what
the model says depends on the images it was given.

A prompt without a complete `<<script>>...<</script>>` span is refused. Everything else behaves as in the
other engines (dev_engine_core): `request_output_len` cuts the script, stop words end it (and stay in the
output), streaming and non-streaming responses, `exclude_input_in_output`, stop requests and cancellation.
Sampling settings, seeds, bad words and guides have no effect; log probabilities are reported as 0.0.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from dev_engine_core import EngineCore
from dev_engine_images import image_colours
from dev_engine_job import GenerationJob, RequestError
from dev_engine_metrics import EngineMetrics

SCRIPT_START = "<<script>>"
SCRIPT_END = "<</script>>"
IMAGES_MARKER = "<<images>>"


def extract_script(prompt_text: str) -> str:
    """The text of the last `<<script>>...<</script>>` span; RequestError if there is none."""
    start = prompt_text.rfind(SCRIPT_START)
    end = prompt_text.find(SCRIPT_END, start + len(SCRIPT_START)) if start >= 0 else -1
    if end < 0:
        raise RequestError(f"the scripted dev engine needs a {SCRIPT_START}text to emit{SCRIPT_END} span in the prompt")
    return prompt_text[start + len(SCRIPT_START) : end]


class ScriptedEngine(EngineCore):
    """Emits each request's script, one token per step for all running requests."""

    name = "scripted"
    takes_prompt_tables = True

    def __init__(self, model_dir: str, itl_s: float, max_num_active: int, metrics: EngineMetrics) -> None:
        super().__init__(max_num_active, metrics)
        from tokenizers import Tokenizer

        folder = Path(model_dir) if model_dir else None
        if folder is None or not (folder / "tokenizer.json").is_file():
            raise ValueError(f"engine 'scripted' needs model_dir with a tokenizer.json, got {model_dir!r}")
        self._tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        size = self._tokenizer.get_vocab_size(with_added_tokens=True)
        if (folder / "config.json").is_file():
            size = int(json.loads((folder / "config.json").read_text()).get("vocab_size", size))
        self.vocab_size = size
        self._itl_s = itl_s
        # Filled by prepare() on Triton's execute thread, consumed by the scheduler thread.
        self._scripts: dict[GenerationJob, list[int]] = {}

    def prepare(self, job: GenerationJob) -> None:
        """Find and tokenize the job's script (refused here, before anything is queued, if it has none)."""
        text_ids = [token for token in job.prompt if token < self.vocab_size]  # not the image rows
        script = extract_script(self._tokenizer.decode(text_ids, skip_special_tokens=False))
        if IMAGES_MARKER in script:
            table = job.prompt_table
            colours = image_colours(job.prompt, self.vocab_size, table) if table is not None else []
            script = script.replace(IMAGES_MARKER, " ".join(colours) or "no images")
        script_ids = self._tokenizer.encode(script, add_special_tokens=False).ids
        self._scripts[job] = list(reversed(script_ids))

    def _run(self) -> None:
        active: list[GenerationJob] = []
        due = time.monotonic()
        while self.running:
            timeout = max(0.0, due - time.monotonic()) if active else None
            admitted, stopping = self._take_work(timeout)
            for job in stopping:
                self._finish(job)
            active = [job for job in active + admitted if not job.done]
            if active and time.monotonic() >= due:
                for job in active:
                    self._step(job)
                due = time.monotonic() + self._itl_s
            active = [job for job in active if not job.done]
            for job in [job for job in self._scripts if job.done]:
                del self._scripts[job]
            self._publish_metrics()

    def _step(self, job: GenerationJob) -> None:
        script = self._scripts.get(job)
        if not script:
            self._finish(job)  # the script is said: end as on end_id
            return
        self._advance(job, script.pop(), 0.0)

    def _reset(self) -> None:
        self._scripts = {job: ids for job, ids in self._scripts.items() if not job.done and not job.admitted}
