"""GET /v1/organization/usage/completions: usage in the shape of OpenAI's usage API, for admin keys."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request
from starlette.datastructures import QueryParams

from gateway.api.auth import api_key_of
from gateway.api.tenancy import tenants_of
from gateway.errors import InvalidRequestError, PermissionDeniedError, UnsupportedFeatureError
from gateway.tenants.limits import DAY_S
from gateway.tenants.usage import day_of
from gateway.tenants.usage_report import DEFAULT_BUCKETS, GROUP_FIELDS, MAX_BUCKETS, PAGE_PREFIX, UsageQuery, usage_page

router = APIRouter(tags=["OpenAI"])


@router.get("/v1/organization/usage/completions")
async def completions_usage(request: Request) -> dict[str, object]:
    """Requests and tokens per day, grouped and filtered as OpenAI's API does; admin keys only."""
    tenants = tenants_of(request)
    key = api_key_of(request.scope)
    if tenants is None or key is None or not key.admin:
        raise PermissionDeniedError(
            "Reading usage needs an admin key: a key whose entry in the keys file (--keys-file) has 'role: admin'."
        )
    query = usage_query(request.query_params, time.time())
    await tenants.usage.flush()  # this process's latest counts
    rows = await tenants.usage.ledger.read(day_of(query.start_time), query.end_time)
    return usage_page(rows, query)


def _listed(params: QueryParams, name: str) -> list[str]:
    """A list parameter as clients send it: repeated, with `[]`, or comma-separated."""
    values = params.getlist(name) + params.getlist(name + "[]")
    return [part for value in values for part in value.split(",") if part]


def _integer(params: QueryParams, name: str, default: int | None = None) -> int:
    raw = params.get(name)
    if raw is None:
        if default is None:
            raise InvalidRequestError(
                f"Missing required parameter: '{name}'.", param=name, code="missing_required_parameter"
            )
        return default
    try:
        return int(raw)
    except ValueError:
        raise InvalidRequestError(f"Invalid value for '{name}': expected an integer", param=name) from None


def usage_query(params: QueryParams, now: float) -> UsageQuery:
    """The query's parameters checked; 400 naming the parameter otherwise."""
    start = _integer(params, "start_time")
    end = _integer(params, "end_time", int(now))
    if end <= start:
        raise InvalidRequestError("'end_time' must be after 'start_time'", param="end_time")
    if params.get("bucket_width", "1d") != "1d":
        raise UnsupportedFeatureError("usage is kept per day: bucket_width must be 1d", param="bucket_width")
    group_by = _listed(params, "group_by")
    unknown = [name for name in group_by if name not in GROUP_FIELDS]
    if unknown:
        raise UnsupportedFeatureError(
            f"cannot group by '{unknown[0]}': usage is kept by api_key_id, model and project_id (the tenant)",
            param="group_by",
        )
    if _listed(params, "user_ids"):
        raise UnsupportedFeatureError("usage is not kept per user: filter by api_key_ids", param="user_ids")
    limit = _integer(params, "limit", DEFAULT_BUCKETS)
    if not 1 <= limit <= MAX_BUCKETS:
        raise InvalidRequestError(f"'limit' must be from 1 to {MAX_BUCKETS} for 1d buckets", param="limit")
    batch = params.get("batch")
    if batch not in (None, "true", "false"):
        raise InvalidRequestError("'batch' must be true or false", param="batch")
    return UsageQuery(
        start_time=start,
        end_time=end,
        group_by=tuple(group_by),
        api_key_ids=frozenset(_listed(params, "api_key_ids")) or None,
        models=frozenset(_listed(params, "models")) or None,
        project_ids=frozenset(_listed(params, "project_ids")) or None,
        batch=None if batch is None else batch == "true",
        limit=limit,
        page_start=_page(params.get("page"), start, end),
    )


def _page(page: str | None, start: int, end: int) -> int | None:
    if page is None:
        return None
    try:
        first = int(page.removeprefix(PAGE_PREFIX)) if page.startswith(PAGE_PREFIX) else None
    except ValueError:
        first = None
    if first is None or first % DAY_S or not day_of(start) <= first < end:
        raise InvalidRequestError("'page' is not a cursor of this query: send the last page's next_page", param="page")
    return first
