"""Usage rows -> a page of OpenAI's completions usage API (`GET /v1/organization/usage/completions`).

Daily buckets (`bucket_width=1d`, the only width kept), grouped by any of `api_key_id`, `model` and `project_id`
(a tenant is what OpenAI calls a project), filtered by the same three; dashboards built for OpenAI's API read it
as they are. A bucket starts at a UTC midnight: a `start_time` within a day counts that whole day.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from gateway.tenants.limits import DAY_S
from gateway.tenants.usage import UsageCounts, UsageKey, day_of

GROUP_FIELDS = {"api_key_id": "key_id", "model": "model", "project_id": "tenant"}  # OpenAI's name -> ours
DEFAULT_BUCKETS = 7
MAX_BUCKETS = 31
PAGE_PREFIX = "page_"


@dataclass(frozen=True, slots=True)
class UsageQuery:
    """A checked query: the buckets' range and page, the grouping and the filters."""

    start_time: int
    end_time: int
    group_by: tuple[str, ...] = ()
    api_key_ids: frozenset[str] | None = None
    models: frozenset[str] | None = None
    project_ids: frozenset[str] | None = None
    batch: bool | None = None
    limit: int = DEFAULT_BUCKETS
    page_start: int | None = None  # the first bucket of this page (from `page`)

    def bucket_starts(self) -> list[int]:
        """Every bucket's start in the range, from this page's first."""
        first = day_of(self.page_start if self.page_start is not None else self.start_time)
        return list(range(first, self.end_time, DAY_S))

    def keeps(self, key: UsageKey) -> bool:
        """Whether a row passes the filters."""
        if self.batch:  # only batch jobs were asked for: the gateway runs none
            return False
        return (
            (self.api_key_ids is None or key.key_id in self.api_key_ids)
            and (self.models is None or key.model in self.models)
            and (self.project_ids is None or key.tenant in self.project_ids)
        )


def usage_page(rows: Iterable[tuple[UsageKey, UsageCounts]], query: UsageQuery) -> dict[str, Any]:
    """The page of buckets the query asks for."""
    starts = query.bucket_starts()
    shown, rest = starts[: query.limit], starts[query.limit :]
    grouped: dict[int, dict[tuple[str | None, ...], UsageCounts]] = {start: {} for start in shown}
    for key, counts in rows:
        bucket = grouped.get(key.day)
        if bucket is None or not query.keeps(key):
            continue
        group = tuple(getattr(key, GROUP_FIELDS[name]) if name in query.group_by else None for name in GROUP_FIELDS)
        bucket.setdefault(group, UsageCounts()).add(counts)
    data = [
        {
            "object": "bucket",
            "start_time": start,
            "end_time": start + DAY_S,
            "results": [_result(group, counts) for group, counts in sorted(grouped[start].items(), key=_order)],
        }
        for start in shown
    ]
    return {
        "object": "page",
        "data": data,
        "has_more": bool(rest),
        "next_page": f"{PAGE_PREFIX}{rest[0]}" if rest else None,
    }


def _order(item: tuple[tuple[str | None, ...], UsageCounts]) -> tuple[str, ...]:
    return tuple(value or "" for value in item[0])


def _result(group: tuple[str | None, ...], counts: UsageCounts) -> dict[str, Any]:
    api_key_id, model, project_id = group
    return {
        "object": "organization.usage.completions.result",
        "input_tokens": counts.prompt_tokens,
        "output_tokens": counts.completion_tokens,
        "input_cached_tokens": counts.cached_tokens,
        "input_audio_tokens": 0,
        "output_audio_tokens": 0,
        "num_model_requests": counts.requests,
        "project_id": project_id,
        "user_id": None,
        "api_key_id": api_key_id,
        "model": model,
        "batch": None,
    }
