"""Settings: built once at start-up from CLI flags, then `GATEWAY_*` environment variables, then defaults."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Everything the gateway can be configured with."""

    model_config = SettingsConfigDict(env_prefix="GATEWAY_", extra="ignore")

    triton_url: str = Field("127.0.0.1:8001", description="Triton gRPC endpoint, host:port")
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
    log_level: str = "info"
    log_format: Literal["text", "json"] = "text"
    otlp_endpoint: str | None = Field(None, description="OTLP/HTTP traces endpoint (needs the tracing extra)")
    workers: int = Field(1, ge=1, description="worker processes (metrics are summed across them)")

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
