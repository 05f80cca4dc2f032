"""The guide checker (issue 26): checks run in worker processes under a time limit while the event loop stays
free; a check past its limit, or one that ends its worker, is a 400 and the worker is replaced; verdicts are
cached by text; a model without guided decoding refuses before any schema is read."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from gateway.devstack.dev_model import DEV_MODEL_NAME
from gateway.engine.base import EngineCapabilities
from gateway.errors import InvalidRequestError
from gateway.openai import guides, schema_bounds
from gateway.openai.guide_checker import CACHED_VERDICTS, UNCHECKED, GuideCheck, GuideChecker
from gateway.openai.schema_bounds import GuideLimits
from tests.hostile_schemas import chat_body, encode, json_schema_format, ref_chain
from tests.unit.fake_engine import FakeEngine

SLOW = GuideCheck("json_schema", encode(ref_chain(3_000)).decode(), "response_format.json_schema.schema")
GOOD = GuideCheck("json_schema", '{"type":"object","properties":{"a":{"type":"integer"}}}', "guided_json")
WORKER = "trtllm-gateway-guide-check"
JSON = {"content-type": "application/json"}


def worker_pids() -> set[int]:
    """The guide-check worker processes of this test process."""
    return {child.pid for child in multiprocessing.active_children() if child.name == WORKER and child.pid}


@pytest.fixture
async def started() -> AsyncIterator[tuple[GuideChecker, set[int]]]:
    """A checker with two workers, started before the test, and their process ids."""
    checker = GuideChecker(GuideLimits(max_refs=100_000, check_timeout_s=0.5), workers=2)
    others = worker_pids()
    await checker.warm_up()  # the first start waits for the forkserver's xgrammar import
    yield checker, worker_pids() - others
    checker.close()


@pytest.fixture
def checker(started: tuple[GuideChecker, set[int]]) -> GuideChecker:
    return started[0]


async def loop_gaps_during(work: asyncio.Future[object] | asyncio.Task[object]) -> float:
    """The longest the event loop went without running a 5 ms ticker while `work` ran."""
    longest, last = 0.0, time.monotonic()
    while not work.done():
        await asyncio.sleep(0.005)
        now = time.monotonic()
        longest, last = max(longest, now - last), now
    return longest


async def test_a_check_past_its_time_limit_is_a_400_the_loop_stays_free_and_the_worker_is_replaced(
    checker: GuideChecker,
) -> None:
    run = asyncio.ensure_future(checker.run([SLOW]))
    started = time.monotonic()
    longest = await loop_gaps_during(run)
    with pytest.raises(InvalidRequestError) as info:
        await run
    assert 0.5 <= time.monotonic() - started < 3
    assert longest < 0.1, f"the loop stalled {longest:.3f} s"
    assert info.value.param == SLOW.param and "--guide-check-timeout-s" in info.value.message
    await checker.run([GOOD])  # a fresh worker
    assert checker.cached(SLOW.kind, SLOW.source) is UNCHECKED  # a timeout is no verdict on the text


async def test_a_check_that_waited_for_a_busy_worker_is_refused_but_not_remembered() -> None:
    checker = GuideChecker(GuideLimits(max_refs=100_000, check_timeout_s=0.5), workers=1)
    try:
        await checker.warm_up()
        slow = asyncio.ensure_future(checker.run([SLOW]))
        await asyncio.sleep(0.01)
        with pytest.raises(InvalidRequestError) as waited:
            await checker.run([GOOD])  # its half second passes while the one worker runs SLOW
        assert "--guide-check-timeout-s" in waited.value.message
        await asyncio.gather(slow, return_exceptions=True)
        assert checker.cached(GOOD.kind, GOOD.source) is UNCHECKED
        await checker.run([GOOD])
    finally:
        checker.close()


async def test_a_worker_killed_mid_check_is_replaced_and_the_check_retried_within_its_limit(
    started: tuple[GuideChecker, set[int]],
) -> None:
    checker, pids = started
    run = asyncio.ensure_future(checker.run([SLOW]))
    await asyncio.sleep(0.2)
    for pid in pids:  # the one running the check, and the idle one
        os.kill(pid, signal.SIGKILL)
    with pytest.raises(InvalidRequestError) as info:
        await run
    assert info.value.param == SLOW.param and "--guide-check-timeout-s" in info.value.message
    await checker.run([GOOD])  # on a fresh worker too, though its own was killed while idle
    assert not pids & worker_pids()


async def test_an_input_that_ends_the_worker_is_a_400_naming_the_field(checker: GuideChecker) -> None:
    # Not JSON: the worker's json.loads raises, which ends it (twice: once more on a fresh worker).
    with pytest.raises(InvalidRequestError) as info:
        await checker.run([GuideCheck("json_schema", "{not json", "tools[1].function.parameters")])
    assert info.value.param == "tools[1].function.parameters" and "could not be checked" in info.value.message
    await checker.run([GOOD])


async def test_warm_up_starts_every_worker_and_close_ends_them(started: tuple[GuideChecker, set[int]]) -> None:
    checker, pids = started
    assert len(pids) == 2
    checker.close()
    assert not pids & worker_pids()
    await checker.run([GuideCheck("regex", "[0-9]+", "guided_regex")])  # started again on demand


async def test_problems_are_reported_for_the_field_and_cached(checker: GuideChecker) -> None:
    bad = GuideCheck("json_schema", '{"type":"object","properties":5}', "tools[3].function.parameters")
    with pytest.raises(InvalidRequestError) as info:
        await checker.run([GOOD, bad])
    assert info.value.param == "tools[3].function.parameters" and "properties" in info.value.message
    assert checker.cached(GOOD.kind, GOOD.source) is None
    assert checker.cached(bad.kind, bad.source) == info.value.message
    for kind, source, param in [("regex", "a(", "guided_regex"), ("grammar", "root ::= x", "guided_grammar")]:
        with pytest.raises(InvalidRequestError) as info:
            await checker.run([GuideCheck(kind, source, param)])  # type: ignore[arg-type]
        assert info.value.param == param


def test_the_verdict_cache_is_bounded() -> None:
    checker = GuideChecker()
    for index in range(CACHED_VERDICTS + 10):
        checker.remember("regex", f"r{index}", None)
    assert checker.cached("regex", "r0") is UNCHECKED
    assert checker.cached("regex", f"r{CACHED_VERDICTS + 9}") is None


# --- through the HTTP API ----------------------------------------------------------------------------------------


GUIDED = EngineCapabilities("fake", return_sequences=True, logprobs=True, guided_decoding=True)


async def test_a_model_without_guided_decoding_refuses_before_reading_the_schema(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    def must_not_run(*args: object) -> str:
        raise AssertionError("the schema was read")

    monkeypatch.setattr(guides, "compact_json", must_not_run)
    monkeypatch.setattr(schema_bounds, "measure_schema", must_not_run)
    body = chat_body(DEV_MODEL_NAME, response_format=json_schema_format(ref_chain(10_000)))
    response = await client.post("/v1/chat/completions", content=encode(body), headers=JSON)
    assert response.status_code == 400 and response.json()["error"]["param"] == "response_format"
    assert "guided decoding" in response.json()["error"]["message"]


async def test_a_guided_model_gets_bounded_and_checked_guides(
    client: httpx.AsyncClient, fake_engine: FakeEngine
) -> None:
    fake_engine.capable = GUIDED
    body = chat_body(DEV_MODEL_NAME, response_format=json_schema_format(ref_chain(2_000)))
    response = await client.post("/v1/chat/completions", content=encode(body), headers=JSON)
    assert response.status_code == 400 and "--max-guide-refs" in response.json()["error"]["message"]
    bad = chat_body(DEV_MODEL_NAME, guided_json={"type": "object", "required": "a"})
    response = await client.post("/v1/chat/completions", content=encode(bad), headers=JSON)
    assert response.status_code == 400 and response.json()["error"]["param"] == "guided_json"
    assert fake_engine.requests == []
    good = chat_body(DEV_MODEL_NAME, response_format=json_schema_format(ref_chain(3)))
    response = await client.post("/v1/chat/completions", content=encode(good), headers=JSON)
    assert response.status_code == 200, response.text
    schema = encode(ref_chain(3)).decode().replace(" ", "")
    sent = fake_engine.requests[0]
    # The checked schema goes out as its compact-JSON grammar (--guided-json-whitespace compact, the default).
    builder = GuideChecker()
    try:
        assert (sent.guide_type, sent.guide) == ("ebnf_grammar", await builder.compact_json_grammar(schema))
    finally:
        builder.close()
