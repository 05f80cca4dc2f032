"""The store's contract, the same tests on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import asyncio

import pytest

from gateway.errors import ConfigurationError, PayloadTooLargeError
from gateway.state import (
    ConversationRecord,
    EventRecord,
    ItemRecord,
    ResponseRecord,
    Retention,
    Store,
    StoreConfig,
    StoreLimits,
    UsageRecord,
    open_store,
)
from gateway.state.database import Sql
from gateway.state.migrations import LATEST_VERSION, schema_version

ALICE, BOB = "key:alice", "key:bob"


def response(
    id_: str, owner: str = ALICE, previous: str | None = None, thread: str = "", status: str = "completed"
) -> ResponseRecord:
    running = status in ("queued", "in_progress")
    return ResponseRecord(
        id=id_,
        owner=owner,
        created_at=1000.0,
        status=status,
        body=b'{"id": "%s"}' % id_.encode(),
        input=b"[]",
        previous_id=previous,
        thread_id=thread or id_,
        background=running,
        expires_at=1100.0,
    )


def conversation(id_: str = "conv_1", owner: str = ALICE) -> ConversationRecord:
    return ConversationRecord(id=id_, owner=owner, created_at=1000.0, metadata=b"{}")


def items(*ids: str, size: int = 10) -> list[ItemRecord]:
    return [ItemRecord(id_, b"x" * size) for id_ in ids]


async def test_a_response_is_its_owners_alone(store: Store) -> None:
    await store.responses.put(response("resp_1"))
    found = await store.responses.get("resp_1", ALICE)
    assert found is not None and found.body == b'{"id": "resp_1"}' and found.status == "completed"
    assert await store.responses.get("resp_1", BOB) is None
    assert not await store.responses.delete("resp_1", BOB)
    assert await store.responses.delete("resp_1", ALICE)
    assert await store.responses.get("resp_1", ALICE) is None
    assert not await store.responses.delete("resp_1", ALICE)


async def test_the_chain_is_oldest_first_and_ends_at_a_deleted_response(store: Store) -> None:
    await store.responses.put(response("resp_1"))
    await store.responses.put(response("resp_2", previous="resp_1", thread="resp_1"))
    await store.responses.put(response("resp_3", previous="resp_2", thread="resp_1"))
    assert [r.id for r in await store.responses.chain("resp_3", ALICE)] == ["resp_1", "resp_2", "resp_3"]
    assert await store.responses.chain("resp_3", BOB) == []
    await store.responses.delete("resp_2", ALICE)
    assert [r.id for r in await store.responses.chain("resp_3", ALICE)] == ["resp_3"]


async def test_a_chain_larger_than_the_history_limit_is_refused(store: Store, limits: StoreLimits) -> None:
    big = response("resp_1")
    big.input = b"x" * 3000
    await store.responses.put(big)
    previous = "resp_1"
    for n in range(2, 4):
        turn = response(f"resp_{n}", previous=previous, thread="resp_1")
        turn.input = b"x" * 3000
        await store.responses.put(turn)
        previous = turn.id
    with pytest.raises(PayloadTooLargeError) as refused:
        await store.responses.chain("resp_3", ALICE)
    assert refused.value.param == "previous_response_id"


async def test_a_response_over_the_size_limit_is_refused_naming_the_field(store: Store) -> None:
    big = response("resp_big")
    big.body = b"x" * 5000
    with pytest.raises(PayloadTooLargeError) as refused:
        store.responses.check_size(big, "input")
    assert refused.value.param == "input" and refused.value.status == 413


async def test_a_new_turn_renews_its_threads_expiry_and_the_purge_spares_it(store: Store) -> None:
    await store.responses.put(response("resp_1"))
    await store.responses.put(response("resp_other"))
    turn = response("resp_2", previous="resp_1", thread="resp_1")
    turn.expires_at = 5000.0
    await store.responses.put(turn)
    assert await store.purge_expired(2000.0) == 1  # resp_other only
    first = await store.responses.get("resp_1", ALICE)
    assert first is not None and first.expires_at == 5000.0
    assert await store.responses.get("resp_other", ALICE) is None


async def test_only_a_running_response_is_updated(store: Store) -> None:
    await store.responses.put(response("resp_1", status="in_progress"))
    assert await store.responses.update_running("resp_1", "cancelled", b"{}")
    assert not await store.responses.update_running("resp_1", "completed", b"{}")
    found = await store.responses.get("resp_1", ALICE)
    assert found is not None and found.status == "cancelled"


async def test_events_are_kept_in_order_once(store: Store) -> None:
    await store.responses.put(response("resp_1", status="in_progress"))
    await store.responses.add_events("resp_1", [EventRecord(n, "response.x", b"{}") for n in range(5)])
    await store.responses.add_events("resp_1", [EventRecord(4, "response.x", b"{}"), EventRecord(5, "a", b"[]")])
    after = await store.responses.events_after("resp_1", 2)
    assert [e.sequence for e in after] == [3, 4, 5] and after[-1].name == "a"
    assert await store.responses.last_event("resp_1") == 5
    await store.responses.delete("resp_1", ALICE)
    assert await store.responses.events_after("resp_1", -1) == []


async def test_background_runs_lease_cancel_and_finish(store: Store) -> None:
    await store.runs.start(response("resp_bg", status="queued"), "replica-a", lease_until=1010.0)
    assert await store.runs.running("replica-a") == {"resp_bg"}
    assert await store.runs.cancels("replica-a") == set()
    assert await store.runs.ask_cancel("resp_bg")
    assert await store.runs.cancels("replica-a") == {"resp_bg"}
    await store.runs.renew("replica-a", 1020.0)
    assert await store.runs.expired(1015.0) == []
    events = [EventRecord(0, "response.cancelled", b"{}")]
    assert await store.runs.finish("resp_bg", "cancelled", b'{"status": "cancelled"}', events)
    assert await store.runs.running("replica-a") == set()
    assert not await store.runs.ask_cancel("resp_bg")
    found = await store.responses.get("resp_bg", ALICE)
    assert found is not None and found.status == "cancelled" and found.background
    assert [e.sequence for e in await store.responses.events_after("resp_bg", -1)] == [0]


async def test_an_expired_run_is_taken_over_exactly_once(store: Store) -> None:
    await store.runs.start(response("resp_bg", status="in_progress"), "replica-a", lease_until=1010.0)
    assert await store.runs.expired(1005.0) == []
    assert await store.runs.expired(1011.0) == ["resp_bg"]
    claims = await asyncio.gather(*(store.runs.take_over("resp_bg", 1011.0) for _ in range(4)))
    assert sorted(claims) == [False, False, False, True]
    assert await store.runs.running("replica-a") == set()


async def test_a_conversation_is_its_owners_alone(store: Store) -> None:
    await store.conversations.create(conversation(), items("msg_1", "msg_2"), None, "items")
    found = await store.conversations.get("conv_1", ALICE)
    assert found is not None and found.item_count == 2 and found.size == 20
    assert await store.conversations.get("conv_1", BOB) is None
    assert await store.conversations.set_metadata("conv_1", BOB, b'{"a": "b"}', 1001.0) is None
    updated = await store.conversations.set_metadata("conv_1", ALICE, b'{"a": "b"}', 1001.0)
    assert updated is not None and updated.metadata == b'{"a": "b"}'
    assert await store.conversations.items("conv_1", BOB) is None
    assert await store.conversations.page("conv_1", BOB, None, 10, "asc") is None
    assert await store.conversations.item("conv_1", BOB, "msg_1") is None
    assert await store.conversations.delete_item("conv_1", BOB, "msg_1") is None
    assert not await store.conversations.delete("conv_1", BOB)
    assert await store.conversations.delete("conv_1", ALICE)
    assert await store.conversations.get("conv_1", ALICE) is None
    assert await store.conversations.append("conv_1", ALICE, items("msg_3"), 1002.0, None, "items") is None


async def test_items_keep_their_order_and_pages_follow_it(store: Store) -> None:
    await store.conversations.create(conversation(), items("a", "b"), None, "items")
    placed = await store.conversations.append("conv_1", ALICE, items("c", "d"), 1001.0, None, "items")
    assert placed is not None and [i.position for i in placed] == [2, 3]
    every = await store.conversations.items("conv_1", ALICE)
    assert every is not None and [i.id for i in every] == ["a", "b", "c", "d"]
    first = await store.conversations.page("conv_1", ALICE, None, 3, "asc")
    assert first is not None and [i.id for i in first.items] == ["a", "b", "c"] and first.has_more
    rest = await store.conversations.page("conv_1", ALICE, "c", 3, "asc")
    assert rest is not None and [i.id for i in rest.items] == ["d"] and not rest.has_more
    newest = await store.conversations.page("conv_1", ALICE, None, 2, "desc")
    assert newest is not None and [i.id for i in newest.items] == ["d", "c"] and newest.has_more
    older = await store.conversations.page("conv_1", ALICE, "c", 5, "desc")
    assert older is not None and [i.id for i in older.items] == ["b", "a"] and not older.has_more
    assert await store.conversations.page("conv_1", ALICE, "nope", 5, "asc") is None
    assert await store.conversations.delete_item("conv_1", ALICE, "b")
    assert not await store.conversations.delete_item("conv_1", ALICE, "b")
    found = await store.conversations.get("conv_1", ALICE)
    assert found is not None and found.item_count == 3 and found.size == 30
    one = await store.conversations.item("conv_1", ALICE, "d")
    assert one is not None and one.data == b"x" * 10


async def test_concurrent_appends_keep_every_item(store: Store) -> None:
    await store.conversations.create(conversation(), [], None, "items")
    await asyncio.gather(
        *(store.conversations.append("conv_1", ALICE, items(f"i{n}"), 1001.0, None, "items") for n in range(5))
    )
    every = await store.conversations.items("conv_1", ALICE)
    assert every is not None and sorted(i.id for i in every) == [f"i{n}" for n in range(5)]
    assert [i.position for i in every] == [0, 1, 2, 3, 4]


async def test_a_conversation_past_its_limits_is_refused_and_unchanged(store: Store) -> None:
    await store.conversations.create(conversation(), items("a", "b", "c"), None, "items")
    with pytest.raises(PayloadTooLargeError) as by_count:
        await store.conversations.append("conv_1", ALICE, items("d", "e", "f"), 1001.0, None, "items")
    assert by_count.value.param == "items"
    with pytest.raises(PayloadTooLargeError):
        await store.conversations.append("conv_1", ALICE, items("g", size=3000), 1001.0, None, "input")
    with pytest.raises(PayloadTooLargeError):
        await store.conversations.create(conversation("conv_2"), items(*"abcdef"), None, "items")
    assert await store.conversations.get("conv_2", ALICE) is None
    found = await store.conversations.get("conv_1", ALICE)
    assert found is not None and found.item_count == 3


async def test_conversations_expire_by_their_last_change(store: Store) -> None:
    await store.conversations.create(conversation(), items("a"), 1200.0, "items")
    await store.conversations.create(conversation("conv_2"), [], 1200.0, "items")
    await store.conversations.append("conv_1", ALICE, items("b"), 1300.0, 1500.0, "items")
    assert await store.purge_expired(1250.0) == 1
    assert await store.conversations.get("conv_2", ALICE) is None
    assert await store.conversations.get("conv_1", ALICE) is not None


async def test_opening_again_migrates_nothing_and_keeps_everything(store_url: str, limits: StoreLimits) -> None:
    config = StoreConfig(url=store_url, limits=limits, retention=Retention())
    first, second = await asyncio.gather(open_store(config), open_store(config))  # two replicas at once
    try:
        await first.responses.put(response("resp_1"))
        assert await second.responses.get("resp_1", ALICE) is not None
        async with second.database.transaction() as connection:
            assert await schema_version(connection) == LATEST_VERSION
            rows = await connection.fetch(Sql("SELECT version FROM schema_version"))
        assert sorted(int(row[0]) for row in rows) == list(range(1, LATEST_VERSION + 1))  # type: ignore[arg-type]
    finally:
        await first.close()
        await second.close()


async def test_a_schema_newer_than_the_gateway_is_refused(store: Store, store_url: str) -> None:
    async with store.database.transaction() as connection:
        await connection.execute(Sql("INSERT INTO schema_version (version) VALUES ($1)"), LATEST_VERSION + 1)
    with pytest.raises(ConfigurationError, match="newer than this gateway knows"):
        await open_store(StoreConfig(url=store_url))


async def test_usage_rows_are_added_to_never_replaced(store: Store, store_url: str, limits: StoreLimits) -> None:
    day, next_day = 86400 * 20000, 86400 * 20001

    def row(requests: int, key: str = "k1", on: int = day) -> UsageRecord:
        return UsageRecord(on, "team-a", key, "m", requests, 10 * requests, requests, 2 * requests)

    await store.usage.add([row(1), row(2, key="k2")])
    # Another process (a replica) adds its own batches to the same rows at the same time.
    other = await open_store(StoreConfig(url=store_url, limits=limits))
    try:
        await asyncio.gather(*(s.usage.add([row(3), row(1, on=next_day)]) for s in (store, other, store, other)))
    finally:
        await other.close()
    found = {(r.key_id, r.day): r for r in await store.usage.read(day, next_day + 86400)}
    assert found[("k1", day)] == row(13)
    assert found[("k2", day)] == row(2, key="k2")
    assert found[("k1", next_day)] == row(4, on=next_day)
    assert [r.day for r in await store.usage.read(next_day, next_day + 86400)] == [next_day]
    assert await store.usage.read(0, day) == []
