"""Settings: built once at start-up from CLI flags, then `GATEWAY_*` environment variables, then defaults."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from gateway.engine.routing import PolicyName


class Settings(BaseSettings):
    """Everything the gateway can be configured with."""

    model_config = SettingsConfigDict(env_prefix="GATEWAY_", extra="ignore")

    models_file: Path | None = Field(None, description="YAML file of served models (instead of the model flags)")
    triton_url: str = Field(
        "127.0.0.1:8001", description="Triton gRPC endpoint(s), host:port or dns:///name:port, comma-separated"
    )
    triton_model: Literal["ensemble", "tensorrt_llm_bls"] | str = Field(
        "ensemble", description="the Triton model to call: the ensemble or tensorrt_llm_bls"
    )
    triton_engine_model: str = Field("tensorrt_llm", description="engine model that receives stop requests")
    served_model_name: str | None = Field(None, description="model name clients use (default: tokenizer folder name)")
    tokenizer: Path | None = Field(None, description="Hugging Face tokenizer folder of the served model")
    chat_template: Path | None = Field(None, description="Jinja chat template file (overrides the tokenizer's)")
    host: str = "127.0.0.1"
    port: int = 8000
    default_max_tokens: int = Field(256, ge=1, description="max_tokens when a request sets none")
    max_tokens_limit: int = Field(32768, ge=1, description="largest max_tokens a request may ask for")
    max_n: int = Field(8, ge=1, le=128, description="largest n (choices per request) a request may ask for")
    tool_call_parser: str = Field("auto", description="tool-call parser: a name, auto (from the chat template), none")
    reasoning_parser: str = Field("auto", description="reasoning parser: a name, auto (from the chat template), none")
    guided_json_whitespace: Literal["compact", "any"] = Field(
        "compact", description="JSON guides: compact (no free whitespace, as EBNF) or any (the engine's default)"
    )
    engine_logits: bool = Field(
        False, description="the engine gathers generation/context logits (top_logprobs, echo logprobs; direct mode)"
    )
    # Routing over a model's upstreams (a models-file entry may override policy and block size)
    routing: PolicyName = Field("least_outstanding", description="how requests are spread over a model's upstreams")
    kv_block_size: int = Field(64, ge=1, le=4096, description="tokens per KV-cache block (prefix affinity)")
    session_header: str = Field("x-session-id", min_length=1, description="header naming a client session")
    session_from_user: bool = Field(False, description="also route by the body's `user` (session affinity)")
    # Admission and limits
    max_concurrent_requests: int | None = Field(None, ge=1, description="running generation requests at most")
    max_queued_requests: int = Field(0, ge=0, description="requests that may wait for a slot (beyond: 429)")
    queue_timeout_s: float = Field(10.0, gt=0, description="longest wait for a slot before a 429")
    max_body_bytes: int = Field(8 * 1024 * 1024, ge=1024, description="larger request bodies get a 413")
    max_prompt_tokens: int | None = Field(None, ge=1, description="longer prompts get a 400")
    max_upstream_requests: int | None = Field(
        None,
        ge=0,
        description="requests open at each upstream Triton at once (per worker); the rest wait (0: none; default: "
        "the workers' share of twice the engine model's max_batch_size, 128 where Triton declares none)",
    )
    max_connections: int | None = Field(
        None, ge=1, description="open HTTP connections per process (default: the file-descriptor limit minus 128)"
    )
    # Guides and tools: bounds checked on the event loop, then the checks a worker process runs in a time limit
    max_guide_bytes: int = Field(128 * 1024, ge=1024, description="one guide's text (schema, regex, grammar, choices)")
    max_guide_depth: int = Field(64, ge=2, le=200, description="nesting levels of a JSON schema")
    max_guide_refs: int = Field(512, ge=0, description="$refs in one JSON schema")
    max_guide_enum_values: int = Field(2048, ge=1, description="enum values, choices and anyOf/oneOf branches")
    max_guide_properties: int = Field(128, ge=1, description="properties of one object in a JSON schema")
    max_tools: int = Field(256, ge=1, description="tools in one request")
    max_tools_bytes: int = Field(1024 * 1024, ge=1024, description="all tool definitions of a request, as JSON")
    guide_check_timeout_s: float = Field(10.0, gt=0, description="meta-schema and xgrammar checks of a request")
    guide_check_workers: int = Field(1, ge=1, le=64, description="worker processes that check guides")
    # Images: what a request may carry, and how image URLs are fetched
    max_images: int = Field(16, ge=1, le=1024, description="images in one request")
    image_max_bytes: int = Field(20 * 1024 * 1024, ge=1024, description="one image file (fetched or data: URL)")
    image_max_pixels: int = Field(4096 * 4096, ge=1, description="one image's width x height, read before decoding")
    image_fetch_timeout_s: float = Field(10.0, gt=0, description="fetching one image URL, redirects included")
    image_fetch_allow_networks: str | None = Field(
        None, description="comma-separated CIDRs of non-public networks image URLs may point to (default none)"
    )
    image_cache_mb: int = Field(64, ge=0, description="fetched images kept by URL for 5 minutes (0: no cache)")
    image_placeholder: str | None = Field(
        None,
        description="an image's place in the prompt (default: <|image|> if the tokenizer has it, else <image>)",
    )
    # Timeouts (None: no limit)
    header_timeout_s: float = Field(10.0, gt=0, description="a request's headers must arrive within this time")
    body_timeout_s: float = Field(60.0, gt=0, description="a request's whole body must arrive within this time")
    connect_timeout_s: float = Field(5.0, gt=0, description="Triton RPCs for model discovery and stop requests")
    first_token_timeout_s: float | None = Field(300.0, gt=0, description="time to first token")
    idle_timeout_s: float | None = Field(120.0, gt=0, description="longest gap between two tokens")
    request_timeout_s: float | None = Field(None, gt=0, description="whole generation")
    drain_timeout_s: float = Field(30.0, ge=0, description="on SIGTERM, time running streams get to finish")
    sse_keepalive_s: float = Field(15.0, gt=0, description="longest silence on a stream before a comment line")
    client_write_timeout_s: float = Field(60.0, gt=0, description="longest a write may wait for a client to read")
    stream_interval: int = Field(
        1,
        ge=1,
        le=64,
        description="streams send an event per N tokens (the first at once): less CPU per token, burstier output",
    )
    upstream_streams: int = Field(
        4,
        ge=0,
        le=64,
        description="long-lived gRPC streams per upstream and worker for ensemble and BLS requests (0: a call each)",
    )
    # The store of stored responses and conversations (README: "Stored responses and conversations")
    store_url: str | None = Field(
        None, description="postgresql://... for replicas, or sqlite:///path; default: a SQLite file in --state-dir"
    )
    state_dir: Path | None = Field(
        None, description="the SQLite store's folder (default ~/.local/state/trtllm-gateway)"
    )
    response_retention_days: float | None = Field(30.0, gt=0, description="stored responses are deleted after this")
    conversation_retention_days: float | None = Field(
        None, gt=0, description="conversations are deleted this long after their last change (default: never)"
    )
    max_stored_response_bytes: int = Field(16 * 1024 * 1024, ge=1024, description="one stored response and its input")
    max_conversation_items: int = Field(10_000, ge=1, description="items one conversation may hold")
    max_conversation_bytes: int = Field(64 * 1024 * 1024, ge=1024, description="bytes one conversation may hold")
    background_lease_s: float = Field(
        10.0, ge=1, description="a background response whose replica is silent this long is marked failed"
    )
    # Security
    api_keys: str | None = Field(None, description="comma-separated API keys; none = no authentication")
    api_key_file: Path | None = Field(None, description="file with one API key per line")
    protect_observability: bool = Field(False, description="require the API key on /health/* and /metrics too")
    # Tenants: keys with models, limits and priority; limits shared through Redis
    keys_file: Path | None = Field(None, description="YAML file of API keys: tenant, models, limits, priority, role")
    limits_url: str | None = Field(None, description="redis://host:port/db shared by every replica for the limits")
    limits_on_error: Literal["open", "closed"] = Field(
        "open", description="Redis unreachable: admit without limits (open) or refuse with 429 (closed)"
    )
    priority_aging_s: float = Field(10.0, gt=0, description="a queued request counts one priority class higher per")
    cors_origins: str | None = Field(None, description="comma-separated allowed CORS origins; none = CORS off")
    state_key: str | None = Field(
        None,
        min_length=16,
        description="secret sealing state handed to clients (encrypted reasoning); every replica needs the same",
    )
    log_level: str = "info"
    log_format: Literal["text", "json"] = "text"
    otlp_endpoint: str | None = Field(None, description="OTLP/HTTP traces endpoint (needs the tracing extra)")
    workers: int = Field(1, ge=1, description="worker processes (metrics are summed across them)")

    def api_key_list(self) -> list[str]:
        """Every configured API key (from GATEWAY_API_KEYS and the key file)."""
        keys = [k.strip() for k in (self.api_keys or "").split(",") if k.strip()]
        if self.api_key_file is not None:
            keys += [line.strip() for line in self.api_key_file.read_text().splitlines() if line.strip()]
        return keys

    def cors_origin_list(self) -> list[str]:
        """The allowed CORS origins."""
        return [o.strip() for o in (self.cors_origins or "").split(",") if o.strip()]

    def model_name(self) -> str:
        """The public model name."""
        if self.served_model_name:
            return self.served_model_name
        if self.tokenizer is not None:
            return self.tokenizer.resolve().name
        return self.triton_model


def export_to_environment(settings: Settings) -> None:
    """Write the settings as GATEWAY_* variables, so that worker processes rebuild the same Settings."""
    for name, value in settings.model_dump(exclude_none=True).items():
        os.environ[f"GATEWAY_{name.upper()}"] = str(value)
