"""What a protocol asks of the core, in the core's own terms: no wire format, no pydantic.

A protocol's decoder turns its request body into these objects, and the core plans, renders and runs them. The
field paths (`param`) that errors name are the protocol's own (`messages[2].tool_call_id`, `input[3].call_id`,
`response_format.json_schema.schema`, `text.format.schema`): decoders set them here, the core only repeats them.

Built once per request and not changed after: the per-request ones are plain slotted dataclasses, since a frozen
dataclass's `__init__` costs five times as much (about 0.9 µs for a turn, per turn of every conversation).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from gateway.engine.base import SamplingParams

Role = Literal["system", "user", "assistant", "tool"]
ConstraintKind = Literal["json_object", "json_schema", "regex", "choice", "grammar"]
ImageDetail = Literal["auto", "low", "high"]

# Temperatures this small divide logits into infinities; they mean greedy decoding (vLLM draws the same line).
GREEDY_BELOW = 1e-5


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """One function the model may call. `param` is where the tool is in the request (its `name` is under it),
    `parameters_param` where its schema is; `definition` is the tool as chat templates take it (Hugging Face's
    `{"type": "function", "function": {...}}`) when the client wrote it so, else None and built from the fields."""

    name: str
    parameters: dict[str, Any]  # a JSON schema for the arguments object
    description: str | None = None
    strict: bool = False
    param: str = ""
    parameters_param: str = ""
    definition: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class ToolChoice:
    """`none`, `auto`, `required`, or `function` with the function's `name`; `allowed` restricts the tools the
    model may call to a subset (all tools stay in the prompt, so that it is cached alike)."""

    mode: Literal["none", "auto", "required", "function"]
    name: str | None = None
    allowed: frozenset[str] | None = None

    @property
    def forced(self) -> bool:
        """Whether the model must call a tool (a guide then makes it)."""
        return self.mode in ("required", "function")


@dataclass(slots=True)
class ToolCall:
    """A call the assistant made earlier in the conversation. `arguments` is the decoded arguments object, or the
    text the client replayed when it is not a JSON object (a call the model cut short, replayed as it was: templates
    write a string as it is, and refusing it would make every later turn of that conversation fail)."""

    id: str | None
    name: str
    arguments: dict[str, Any] | str


@dataclass(frozen=True, slots=True)
class ImagePart:
    """An image of a turn, as the client gave it: a `data:` URL or an http(s) URL, and the detail asked for
    (`low`: at most 512 x 512 pixels). `param` is where the part is in the request (errors name it)."""

    url: str
    detail: ImageDetail = "auto"
    param: str = ""


@dataclass(slots=True)
class Turn:
    """One turn of a conversation: what a role said, and for the assistant its calls and reasoning.

    A `tool` turn carries a tool's result: `call_id` names the call it answers (`call_id_param` is where the
    request holds that id), `is_error` says the tool failed. `param` is where the turn is in the request.
    """

    role: Role
    text: str = ""
    param: str = ""
    name: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    reasoning: str | None = None  # the assistant's reasoning text, given back to the chat template
    call_id: str | None = None
    call_id_param: str = ""
    is_error: bool = False
    content: tuple[str | ImagePart, ...] = ()


@dataclass(slots=True)
class Conversation:
    """The turns to render into a prompt; `param` is the field that holds them (errors about all of them).

    `truncate`: a prompt longer than the model's limit drops its oldest turns until it fits (core/truncation.py),
    instead of being refused.
    """

    turns: tuple[Turn, ...]
    param: str = "messages"
    truncate: bool = False

    def images(self) -> list[ImagePart]:
        """Every image of the conversation, in order."""
        return [part for turn in self.turns for part in turn.content if isinstance(part, ImagePart)]


@dataclass(slots=True)
class ToolOptions:
    """The tools the model may call and how: `choice` (none / auto / required / named, an allowed subset) and
    whether several calls may come at once. `param` is the field that holds the tools (`specs[i]` is
    `param[i]`), `choice_param` the field that set the choice."""

    specs: tuple[ToolSpec, ...] = ()
    choice: ToolChoice = ToolChoice("none")
    parallel: bool = True
    choice_param: str = "tool_choice"
    param: str = "tools"


@dataclass(slots=True)
class OutputConstraint:
    """What the output must match, as the client gave it (checked and compiled by the core, core/guides.py).

    `value` is the JSON schema (json_schema), the pattern (regex), the list of strings (choice) or the grammar
    text (grammar); None for json_object. `param` is the field that holds it, `field` the request field that
    asked for it (named when the model cannot enforce it).
    """

    kind: ConstraintKind
    value: Any = None
    param: str = ""
    field: str = ""


@dataclass(slots=True)
class ReasoningOptions:
    """How much the model should reason, for chat templates that take it (effort, or a switch and a budget)."""

    effort: str | None = None
    enabled: bool | None = None
    budget_tokens: int | None = None


@dataclass(slots=True)
class Sampling:
    """The client's sampling values (None: not given)."""

    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None  # 0 and -1 mean "off" (vLLM's spelling)
    seed: int | None = None
    min_tokens: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    repetition_penalty: float | None = None
    ignore_eos: bool = False

    def for_engine(self) -> SamplingParams:
        """The engine's parameters, with the sampling the client expects by default made explicit.

        TensorRT-LLM decodes greedily when neither top_k nor top_p is set, whatever the temperature, while the
        APIs sample by default (temperature 1, top_p 1). So: temperature 0 is sent as top_k=1 (no temperature,
        which some engine versions refuse at 0), and a sampling request without top_k/top_p gets top_p=1.0.
        """
        top_k = self.top_k if self.top_k is not None and self.top_k > 0 else None
        temperature, top_p = self.temperature, self.top_p
        if temperature is not None and temperature < GREEDY_BELOW:
            temperature, top_k, top_p = None, 1, None
        elif top_k is None and top_p is None:
            top_p = 1.0
        return SamplingParams(
            temperature=temperature,
            top_p=top_p,
            top_k=top_k,
            seed=self.seed,
            min_tokens=self.min_tokens,
            presence_penalty=self.presence_penalty,
            frequency_penalty=self.frequency_penalty,
            repetition_penalty=self.repetition_penalty,
            ignore_eos=self.ignore_eos,
        )


@dataclass(slots=True)
class OutputOptions:
    """What the client asked to get back besides text, and the fields that asked (errors name them)."""

    n: int = 1
    logprobs: bool = False
    top_logprobs: int = 0
    prompt_logprobs: bool = False
    logprobs_param: str = "logprobs"
    top_logprobs_param: str = "top_logprobs"  # completions: logprobs
    prompt_logprobs_param: str = "echo"


@dataclass(slots=True)
class GenerationOptions:
    """How to generate: length, sampling, stop strings, streaming, and what comes back besides text."""

    max_tokens: int | None = None  # None: the model's default
    max_tokens_param: str = "max_tokens"
    sampling: Sampling = field(default_factory=Sampling)
    stop: tuple[str, ...] = ()
    stream: bool = False
    output: OutputOptions = field(default_factory=OutputOptions)


@dataclass(slots=True)
class ConversationRequest:
    """A conversation to continue: the turns, the tools, an output constraint, reasoning and generation options."""

    conversation: Conversation
    options: GenerationOptions
    tools: ToolOptions = field(default_factory=ToolOptions)
    constraint: OutputConstraint | None = None
    reasoning: ReasoningOptions | None = None
