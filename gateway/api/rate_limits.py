"""OpenAI's rate-limit headers for a verdict, and the 429 a refusal becomes.

`x-ratelimit-limit-requests`, `-remaining-requests`, `-reset-requests` and the same three for `-tokens`, on
answers and refusals alike, for the key's requests and tokens per minute (absent when the key has no such
limit). A reset is the time until the oldest counted request leaves the minute's window, when `remaining` next
rises, written as OpenAI writes durations (`250ms`, `12s`, `6m0s`). Refusals add `retry-after` (whole seconds)
and `retry-after-ms`, which OpenAI's SDKs read.
"""

from __future__ import annotations

import math
import time

from gateway.errors import GatewayError, QuotaExceededError, RateLimitError
from gateway.tenants.keys import ApiKey
from gateway.tenants.limits import Refusal, Verdict, Window


def duration_text(seconds: float) -> str:
    """A duration as OpenAI's headers write it."""
    if seconds < 1:
        return f"{max(math.ceil(seconds * 1000), 0)}ms"
    if seconds < 60:
        whole = round(seconds, 3)
        return f"{whole:g}s"
    minutes, rest = divmod(math.ceil(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{rest}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes}m{rest}s"


def rate_limit_headers(verdict: Verdict) -> dict[str, str]:
    """The x-ratelimit-* headers of a verdict."""
    headers: dict[str, str] = {}
    for name, window in (("requests", verdict.requests), ("tokens", verdict.tokens)):
        if window is not None:
            headers[f"x-ratelimit-limit-{name}"] = str(window.limit)
            headers[f"x-ratelimit-remaining-{name}"] = str(window.remaining)
            headers[f"x-ratelimit-reset-{name}"] = duration_text(window.reset_s)
    return headers


def _used(window: Window | None) -> int:
    return 0 if window is None else window.limit - window.remaining


def refusal_error(verdict: Verdict, key: ApiKey, tokens: int) -> GatewayError:
    """The 429 for a refused admission, with its headers."""
    headers = rate_limit_headers(verdict)
    retry = verdict.retry_after_s
    if retry is not None:
        headers["retry-after"] = str(max(math.ceil(retry), 1))
        headers["retry-after-ms"] = str(max(math.ceil(retry * 1000), 1))
    again = f" Please try again in {duration_text(retry)}." if retry is not None else ""
    who = f"tenant '{key.tenant}' (key {key.key_id})"
    limits = key.limits
    refusal = verdict.refusal
    if refusal is Refusal.DAY or refusal is Refusal.MONTH:
        period, budget = (
            ("day", limits.tokens_per_day) if refusal is Refusal.DAY else ("month", limits.tokens_per_month)
        )
        resets = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + (retry or 0)))
        return QuotaExceededError(
            f"You exceeded your current quota: {who} has no room for this request's {tokens} tokens in its token "
            f"budget for the {period} ({budget} tokens, UTC), which resets at {resets}.",
            headers=headers,
        )
    if refusal is Refusal.CONCURRENCY:
        message = f"Too many concurrent requests for {who}: Limit {limits.concurrent_requests}.{again}"
        return RateLimitError(message, kind="requests", headers=headers)
    if refusal is Refusal.REQUESTS:
        rpm = limits.requests_per_minute
        message = f"Rate limit reached for {who} on requests per min (RPM): Limit {rpm}, Used {_used(verdict.requests)}"
        return RateLimitError(f"{message}, Requested 1.{again}", kind="requests", headers=headers)
    if refusal is Refusal.TOO_LARGE:
        message = (
            f"Request too large for {who} on tokens per min (TPM): Limit {limits.tokens_per_minute}, Requested "
            f"{tokens} (the prompt's tokens and max_tokens for every choice). Send a shorter prompt or a lower "
            "max_tokens."
        )
        return RateLimitError(message, kind="tokens", headers=headers)
    if refusal is Refusal.TOKENS:
        message = (
            f"Rate limit reached for {who} on tokens per min (TPM): Limit {limits.tokens_per_minute}, Used "
            f"{_used(verdict.tokens)}, Requested {tokens}.{again}"
        )
        return RateLimitError(message, kind="tokens", headers=headers)
    return RateLimitError(f"Rate limits cannot be checked right now.{again}", kind="requests", headers=headers)
