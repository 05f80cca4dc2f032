"""Messages' ids: `msg_` for a message, `toolu_` for a tool use.

A tool use's id is `toolu_` and the id the core's parser gave the call, which is the id style the model's chat
template takes back (Mistral's templates take nine letters and digits only); the prefix comes off again when the
call returns in the history, so the template sees the id it would have seen through chat completions.
"""

from __future__ import annotations

import secrets
import uuid

MESSAGE_PREFIX = "msg_"
TOOL_USE_PREFIX = "toolu_"
_OPENAI_CALL_PREFIX = "call_"


def new_message_id(request_id: str) -> str:
    """`msg_<request id>_<8 hex>` (the suffix keeps upstream ids unique when clients reuse an X-Request-Id)."""
    return f"{MESSAGE_PREFIX}{request_id}_{secrets.token_hex(4)}"


def tool_use_id(call_id: str | None) -> str:
    """The `toolu_` id of a call the model made."""
    suffix = (call_id or uuid.uuid4().hex).removeprefix(_OPENAI_CALL_PREFIX)
    return TOOL_USE_PREFIX + suffix


def call_id_of_tool_use(tool_use: str) -> str:
    """The call id the template gets for a `tool_use` id of the history."""
    return tool_use.removeprefix(TOOL_USE_PREFIX)
