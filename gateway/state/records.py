"""What the store keeps, as plain records: ids, owners, times, statuses, and the protocol's JSON as bytes.

The store never reads the JSON it keeps (a response object, its input items, an item, an event): the Responses
protocol writes and reads it. Times are seconds since the epoch (the gateway's clock: replicas should run NTP).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ANONYMOUS_OWNER = "anonymous"  # the owner of everything when no API keys are configured
TERMINAL_STATUSES = frozenset({"completed", "incomplete", "failed", "cancelled"})
RUNNING_STATUSES = ("queued", "in_progress")
Order = Literal["asc", "desc"]


@dataclass(slots=True)
class ResponseRecord:
    """A stored response: the response object and this turn's input items, as the protocol wrote them."""

    id: str
    owner: str
    created_at: float
    status: str
    body: bytes  # the response object (JSON)
    input: bytes  # this turn's input items (a JSON array), without what previous_response_id brought in
    previous_id: str | None = None
    conversation_id: str | None = None
    thread_id: str = ""  # the conversation's stable id: its conversation, or its first response (affinity)
    background: bool = False
    expires_at: float | None = None

    @property
    def size(self) -> int:
        """Bytes it takes (the size limit's measure)."""
        return len(self.body) + len(self.input)


@dataclass(frozen=True, slots=True)
class EventRecord:
    """One streamed event of a background response."""

    sequence: int
    name: str
    data: bytes


@dataclass(slots=True)
class ConversationRecord:
    """A conversation: its metadata (a JSON object) and how much it holds."""

    id: str
    owner: str
    created_at: float
    metadata: bytes
    item_count: int = 0
    size: int = 0


@dataclass(frozen=True, slots=True)
class ItemRecord:
    """One item of a conversation, in order."""

    id: str
    data: bytes  # the item (JSON), its `id` included
    position: int = 0


@dataclass(frozen=True, slots=True)
class ItemPage:
    """One page of a conversation's items."""

    items: list[ItemRecord]
    has_more: bool


@dataclass(frozen=True, slots=True)
class StoreLimits:
    """How much one stored thing may hold; beyond it the request is refused (413 naming the field)."""

    max_response_bytes: int = 16 * 1024 * 1024
    max_conversation_items: int = 10_000
    max_conversation_bytes: int = 64 * 1024 * 1024
    max_history_bytes: int = 64 * 1024 * 1024  # what previous_response_id brings in, the whole chain


@dataclass(frozen=True, slots=True)
class Retention:
    """How long things are kept (None: until deleted)."""

    response_s: float | None = 30 * 86400.0  # OpenAI keeps responses 30 days
    conversation_s: float | None = None  # OpenAI keeps conversations until deleted
