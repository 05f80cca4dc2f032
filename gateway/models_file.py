"""The models file (`--models-file`, YAML): every served model, its tokenizer, upstreams, routing and limits.

The single-model flags (`--tokenizer`, `--triton-url`, ...) are a shorthand for a file with one entry
(`ModelsFile.from_settings`). Every problem is a ConfigurationError naming the entry and the field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from gateway.config import Settings
from gateway.engine.routing import PolicyName
from gateway.engine.upstreams import UpstreamSource
from gateway.errors import ConfigurationError

Name = Annotated[str, Field(min_length=1, max_length=256, pattern=r"^[^\s]+$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RoutingEntry(_Strict):
    """How a model's requests are spread over its upstreams (unset fields: the command-line defaults)."""

    policy: PolicyName | None = None
    block_size: Annotated[int, Field(ge=1, le=4096)] | None = None
    load_factor: Annotated[float, Field(gt=1.0, le=10.0)] = 1.25
    load_floor: Annotated[int, Field(ge=1)] = 4


class HealthEntry(_Strict):
    """Passive ejection and DNS re-resolution of every pool."""

    interval_s: Annotated[float, Field(gt=0)] = 2.0
    timeout_s: Annotated[float, Field(gt=0)] = 1.0
    eject_after_failures: Annotated[int, Field(ge=1)] = 3
    eject_base_s: Annotated[float, Field(gt=0)] = 2.0
    eject_max_s: Annotated[float, Field(gt=0)] = 60.0
    dns_interval_s: Annotated[float, Field(gt=0)] = 10.0


class LoraEntry(_Strict):
    """A LoRA adapter of a model, served as its own model id."""

    name: Name
    task_id: Annotated[int, Field(ge=0, lt=2**64)]  # TensorRT-LLM's lora_task_id
    folder: Path  # NVIDIA's layout: model.lora_weights.npy, model.lora_config.npy


class ModelEntry(_Strict):
    """One served model."""

    name: Name
    aliases: list[Name] = []
    tokenizer: Path
    chat_template: Path | None = None
    triton_model: Name = "ensemble"
    engine_model: Name = "tensorrt_llm"
    upstreams: Annotated[list[str], Field(min_length=1)]
    default_max_tokens: Annotated[int, Field(ge=1)] = 256
    max_tokens_limit: Annotated[int, Field(ge=1)] = 32768
    max_prompt_tokens: Annotated[int, Field(ge=1)] | None = None
    max_n: Annotated[int, Field(ge=1, le=128)] = 8
    engine_logits: bool = False  # built with --gather_generation_logits / --gather_context_logits (direct mode)
    tool_call_parser: Name = "auto"  # a parser name, auto (from the chat template) or none
    reasoning_parser: Name = "auto"
    guided_json_whitespace: Literal["compact", "any"] = "compact"  # JSON guides as compact EBNF, or the engine's
    image_placeholder: Annotated[str, Field(min_length=1)] | None = None  # None: from the tokenizer
    routing: RoutingEntry = RoutingEntry()
    lora_adapters: list[LoraEntry] = []

    @field_validator("upstreams")
    @classmethod
    def _parse_upstreams(cls, values: list[str]) -> list[str]:
        for value in values:
            UpstreamSource.parse(value)  # ValueError names the bad one
        if len(set(values)) != len(values):
            raise ValueError("lists the same upstream twice")
        return values

    @model_validator(mode="after")
    def _limits(self) -> ModelEntry:
        if self.default_max_tokens > self.max_tokens_limit:
            raise ValueError(f"default_max_tokens {self.default_max_tokens} is above max_tokens_limit")
        task_ids = [adapter.task_id for adapter in self.lora_adapters]
        if len(set(task_ids)) != len(task_ids):
            raise ValueError("two lora_adapters share a task_id")
        return self

    def sources(self) -> list[UpstreamSource]:
        """The parsed upstreams."""
        return [UpstreamSource.parse(value) for value in self.upstreams]


class ModelsFile(_Strict):
    """The whole file."""

    models: Annotated[list[ModelEntry], Field(min_length=1)]
    health: HealthEntry = HealthEntry()

    @model_validator(mode="after")
    def _unique_names(self) -> ModelsFile:
        seen: dict[str, int] = {}
        for index, entry in enumerate(self.models):
            for name in (entry.name, *entry.aliases, *(adapter.name for adapter in entry.lora_adapters)):
                if name in seen:
                    clash = f"'{name}' is also a name of models[{seen[name]}]"
                    raise ValueError(f"models[{index}] ('{entry.name}'): {clash}")
                seen[name] = index
        return self

    @classmethod
    def load(cls, path: Path) -> ModelsFile:
        """Read and check a models file; relative paths in it are relative to the file."""
        try:
            data = yaml.safe_load(path.read_text())
        except OSError as exc:
            raise ConfigurationError(f"models file {path}: cannot read it: {exc.strerror}") from exc
        except yaml.YAMLError as exc:
            raise ConfigurationError(f"models file {path}: not valid YAML: {exc}") from exc
        try:
            parsed = cls.model_validate(data)
        except ValidationError as exc:
            raise ConfigurationError(f"models file {path}: {describe(exc, data)}") from exc
        return parsed.relative_to(path.parent)

    @classmethod
    def from_settings(cls, settings: Settings) -> ModelsFile:
        """The one-entry file that the single-model flags stand for."""
        if settings.tokenizer is None:
            raise ConfigurationError(
                "--tokenizer (GATEWAY_TOKENIZER) is required: the model's Hugging Face tokenizer folder "
                "(or --models-file)"
            )
        try:
            entry = ModelEntry(
                name=settings.model_name(),
                tokenizer=settings.tokenizer,
                chat_template=settings.chat_template,
                triton_model=settings.triton_model,
                engine_model=settings.triton_engine_model,
                upstreams=[u.strip() for u in settings.triton_url.split(",") if u.strip()],
                default_max_tokens=settings.default_max_tokens,
                max_tokens_limit=settings.max_tokens_limit,
                max_prompt_tokens=settings.max_prompt_tokens,
                max_n=settings.max_n,
                engine_logits=settings.engine_logits,
                tool_call_parser=settings.tool_call_parser,
                reasoning_parser=settings.reasoning_parser,
                guided_json_whitespace=settings.guided_json_whitespace,
                image_placeholder=settings.image_placeholder,
            )
        except ValidationError as exc:
            raise ConfigurationError(describe(exc, None, flags=True)) from exc
        return cls(models=[entry])

    def relative_to(self, folder: Path) -> ModelsFile:
        """Paths made absolute against `folder`."""
        models = [
            entry.model_copy(
                update={
                    "tokenizer": folder / entry.tokenizer,
                    "chat_template": folder / entry.chat_template if entry.chat_template else None,
                    "lora_adapters": [
                        adapter.model_copy(update={"folder": folder / adapter.folder})
                        for adapter in entry.lora_adapters
                    ],
                }
            )
            for entry in self.models
        ]
        return self.model_copy(update={"models": models})


def describe(
    error: ValidationError, data: Any, flags: bool = False, entries: str = "models", label: str = "name"
) -> str:
    """The first problem of a validation error, naming the entry (index, and its `label` field: a model's name,
    a key's tenant) of the file's `entries` list, and the field."""
    problem = error.errors()[0]
    location = list(problem["loc"])
    message = problem["msg"].removeprefix("Value error, ")
    if flags:
        field = str(location[0]) if location else "value"
        flag = {"upstreams": "triton-url", "name": "served-model-name"}.get(field, field).replace("_", "-")
        return f"--{flag}: {message}"
    where = ""
    if len(location) >= 2 and location[0] == entries and isinstance(location[1], int):
        index = location[1]
        listed = data.get(entries) if isinstance(data, dict) else None
        entry = listed[index] if isinstance(listed, list) and index < len(listed) else None
        name = entry.get(label) if isinstance(entry, dict) else None
        where = f"{entries}[{index}]" + (f" ('{name}')" if isinstance(name, str) else "")
        location = location[2:]
    field = ".".join(str(part) for part in location)
    parts = [part for part in (where, f"field '{field}'" if field else "") if part]
    return (", ".join(parts) + ": " if parts else "") + message
