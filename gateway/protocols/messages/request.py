"""The bodies of POST /v1/messages and /v1/messages/count_tokens (pydantic, validated once per request).

Top-level fields are typed here; content blocks, tools, `tool_choice`, `thinking` and the output and context
options are kept as JSON and read where they are used (content.py, tools.py, options.py), so that every problem
names its exact place (`messages[2].content[1].signature`) and block types the gateway cannot serve get a 400
saying so. Unknown top-level fields are ignored, as with the OpenAI routes; known ones the gateway cannot honour
are refused (`check_messages_unsupported`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StrictBool

from gateway.errors import UnsupportedFeatureError
from gateway.protocols.openai_shared import INT32_MAX, MAX_STOP_SEQUENCES, Float, Int, StrictStr, encodable_tree

# Claude Code (2.1.154 and later) sends roles the public API does not list; they carry what a user turn does
# (vLLM maps them the same way).
_ROLE_ALIASES = {"ctx": "user", "msg": "user"}

Blocks = Annotated[list[dict[str, Any]], AfterValidator(encodable_tree)]
JsonValue = Annotated[Any, AfterValidator(encodable_tree)]


def _role(value: Any) -> Any:
    return _ROLE_ALIASES.get(value, value) if isinstance(value, str) else value


class MessagesModel(BaseModel):
    """Base: unknown fields ignored (`cache_control`, `citations` and the like change nothing here)."""

    model_config = ConfigDict(extra="ignore")


class InputMessage(MessagesModel):
    """One message of `messages`: `system` turns are Claude Code's, kept where they are."""

    role: Annotated[Literal["user", "assistant", "system"], BeforeValidator(_role)]
    content: StrictStr | Blocks


class Metadata(MessagesModel):
    """`metadata`: only `user_id` is defined."""

    user_id: StrictStr | None = None


class ConversationFields(MessagesModel):
    """What a Messages request and a token count share: the model, the conversation and what shapes the prompt."""

    model: StrictStr
    messages: Annotated[list[InputMessage], Field(min_length=1)]
    system: StrictStr | Blocks | None = None
    tools: JsonValue = None
    tool_choice: JsonValue = None
    thinking: JsonValue = None
    output_config: JsonValue = None
    output_format: JsonValue = None  # the structured-outputs beta's older name for output_config.format
    context_management: JsonValue = None
    mcp_servers: Any = None
    container: Any = None


class MessagesRequest(ConversationFields):
    """Body of POST /v1/messages."""

    max_tokens: Annotated[Int, Field(ge=1)]
    stop_sequences: Annotated[list[StrictStr], Field(max_length=MAX_STOP_SEQUENCES)] | None = None
    temperature: Annotated[Float, Field(ge=0, le=1)] | None = None
    top_p: Annotated[Float, Field(ge=0, le=1)] | None = None
    top_k: Annotated[Int, Field(ge=0, le=INT32_MAX)] | None = None
    stream: StrictBool | None = False
    metadata: Metadata | None = None
    service_tier: Literal["auto", "standard_only"] | None = None  # one tier here: both mean it

    @property
    def user(self) -> str | None:
        """`metadata.user_id`: the end user, for telemetry and session routing."""
        return self.metadata.user_id if self.metadata is not None else None


class CountTokensRequest(ConversationFields):
    """Body of POST /v1/messages/count_tokens."""


def check_messages_unsupported(body: ConversationFields) -> None:
    """400 for a known field whose value the gateway cannot honour."""
    for name, value in (("mcp_servers", body.mcp_servers), ("container", body.container)):
        if value not in (None, [], {}):
            raise UnsupportedFeatureError(f"'{name}' is not supported by this gateway", param=name)
