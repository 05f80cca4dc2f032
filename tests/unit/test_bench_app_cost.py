"""bench.app_cost runs the real app against its instant engine: every token and request gets through."""

from __future__ import annotations

import pytest

from bench import app_cost


@pytest.mark.parametrize("protocol", ["chat", "messages", "responses"])
async def test_app_cost_measures_tokens_and_requests_through_the_real_app(monkeypatch, protocol: str) -> None:
    sent: list[int] = []
    real_request = app_cost._request

    async def counting(app, body: bytes, path: str) -> int:
        assert path == app_cost.PATHS[protocol]
        count = await real_request(app, body, path)
        sent.append(count)
        return count

    monkeypatch.setattr(app_cost, "_request", counting)
    result = await app_cost.measure(tokens=20, requests=3, rounds=1, protocol=protocol)
    assert result["per_token_us"] > 0 and result["per_request_us"] > 0
    # warm-up, the long stream, three short ones; each a start, one body per SSE write and the end
    assert len(sent) == 5
    assert sent[0] == sent[1] >= 20 and all(count >= 3 for count in sent[2:])
