"""The Conversations API in-process, over a SQLite store: shapes, order, paging, ownership, limits and refusals."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from gateway.config import Settings
from gateway.state import Store, StoreConfig, StoreLimits, open_store

KEY_A, KEY_B = "key-a", "key-b"
A = {"Authorization": f"Bearer {KEY_A}"}
B = {"Authorization": f"Bearer {KEY_B}"}


@pytest.fixture
def settings() -> Settings:
    return Settings(api_keys=f"{KEY_A},{KEY_B}")


@pytest.fixture
async def store(tmp_path: Path, app: FastAPI) -> AsyncIterator[Store]:
    limits = StoreLimits(max_conversation_items=30, max_conversation_bytes=4096)
    opened = await open_store(StoreConfig(url=f"sqlite://{tmp_path / 'store.sqlite3'}", limits=limits))
    app.state.store = opened
    try:
        yield opened
    finally:
        await opened.close()


async def create(client: httpx.AsyncClient, body: dict[str, object], headers: dict[str, str] = A) -> dict:
    answer = await client.post("/v1/conversations", json=body, headers=headers)
    assert answer.status_code == 200, answer.text
    return answer.json()


async def test_a_conversation_is_created_read_updated_and_deleted(client: httpx.AsyncClient, store: Store) -> None:
    made = await create(client, {"items": [{"role": "user", "content": "hi"}], "metadata": {"topic": "x"}})
    assert made["object"] == "conversation" and made["id"].startswith("conv_") and made["metadata"] == {"topic": "x"}
    read = (await client.get(f"/v1/conversations/{made['id']}", headers=A)).json()
    assert read == made
    updated = await client.post(f"/v1/conversations/{made['id']}", json={"metadata": {"topic": "y"}}, headers=A)
    assert updated.json()["metadata"] == {"topic": "y"}
    deleted = await client.delete(f"/v1/conversations/{made['id']}", headers=A)
    assert deleted.json() == {"id": made["id"], "object": "conversation.deleted", "deleted": True}
    gone = await client.get(f"/v1/conversations/{made['id']}", headers=A)
    assert gone.status_code == 404 and gone.json()["error"]["type"] == "not_found_error"


async def test_items_are_stored_in_full_form_and_listed_in_order(client: httpx.AsyncClient, store: Store) -> None:
    made = await create(client, {"items": [{"role": "user", "content": "one"}]})
    url = f"/v1/conversations/{made['id']}/items"
    added = await client.post(
        url,
        json={
            "items": [
                {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "two"}]},
                {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "c1", "output": "3"},
            ]
        },
        headers=A,
    )
    assert added.status_code == 200, added.text
    page = added.json()
    assert page["object"] == "list" and len(page["data"]) == 3 and not page["has_more"]
    assert page["data"][0]["content"][0] == {"type": "output_text", "text": "two", "annotations": []}
    assert [i["id"][:3] for i in page["data"]] == ["msg", "fc_", "fco"]
    newest = (await client.get(url, headers=A)).json()  # desc by default
    assert [i["type"] for i in newest["data"]] == ["function_call_output", "function_call", "message", "message"]
    first = newest["data"][-1]
    assert first["content"] == [{"type": "input_text", "text": "one"}] and first["status"] == "completed"
    two = (await client.get(url, params={"order": "asc", "limit": 2}, headers=A)).json()
    assert two["has_more"] and [i["type"] for i in two["data"]] == ["message", "message"]
    assert two["first_id"] == two["data"][0]["id"] and two["last_id"] == two["data"][1]["id"]
    rest = (await client.get(url, params={"order": "asc", "after": two["last_id"]}, headers=A)).json()
    assert [i["type"] for i in rest["data"]] == ["function_call", "function_call_output"] and not rest["has_more"]
    one = (await client.get(f"{url}/{first['id']}", headers=A)).json()
    assert one == first
    after_delete = await client.delete(f"{url}/{first['id']}", headers=A)
    assert after_delete.json()["object"] == "conversation"
    assert len((await client.get(url, headers=A)).json()["data"]) == 3
    assert (await client.get(f"{url}/{first['id']}", headers=A)).status_code == 404


async def test_another_keys_conversation_is_the_404_of_an_unknown_one(client: httpx.AsyncClient, store: Store) -> None:
    made = await create(client, {"items": [{"role": "user", "content": "secret"}]})
    unknown = await client.get("/v1/conversations/conv_nope", headers=B)
    for method, path, body in (
        ("GET", "", None),
        ("POST", "", {"metadata": {}}),
        ("DELETE", "", None),
        ("GET", "/items", None),
        ("POST", "/items", {"items": [{"role": "user", "content": "x"}]}),
    ):
        answer = await client.request(method, f"/v1/conversations/{made['id']}{path}", json=body, headers=B)
        assert answer.status_code == 404
        assert answer.json()["error"]["message"].replace(made["id"], "conv_nope") == unknown.json()["error"]["message"]
    assert (await client.get(f"/v1/conversations/{made['id']}", headers=A)).status_code == 200


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"items": [{"type": "web_search_call"}]}, "items[0].type"),
        ({"items": [{"role": "robot", "content": "x"}]}, "items[0].role"),
        ({"items": [{"type": "function_call", "name": "f", "arguments": "{}"}]}, "items[0].call_id"),
        ({"items": [{"role": "user", "content": "x"}] * 21}, "items"),
        ({"metadata": {"k" * 65: "v"}}, "metadata." + "k" * 65 + ".[key]"),
        ({"metadata": {str(n): "v" for n in range(17)}}, "metadata"),
    ],
)
async def test_bad_bodies_are_400s_naming_the_field(
    client: httpx.AsyncClient, store: Store, body: dict[str, object], param: str
) -> None:
    answer = await client.post("/v1/conversations", json=body, headers=A)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["param"] == param


@pytest.mark.parametrize(
    ("query", "param"),
    [({"limit": 0}, "limit"), ({"limit": 101}, "limit"), ({"order": "up"}, "order"), ({"include": "x"}, "include")],
)
async def test_bad_list_queries_are_400s_naming_the_parameter(
    client: httpx.AsyncClient, store: Store, query: dict[str, object], param: str
) -> None:
    made = await create(client, {})
    answer = await client.get(f"/v1/conversations/{made['id']}/items", params=query, headers=A)
    assert answer.status_code == 400 and answer.json()["error"]["param"] == param


async def test_a_conversation_past_its_size_limit_is_a_413(client: httpx.AsyncClient, store: Store) -> None:
    made = await create(client, {})
    big = [{"role": "user", "content": "x" * 1000}] * 5
    answer = await client.post(f"/v1/conversations/{made['id']}/items", json={"items": big}, headers=A)
    assert answer.status_code == 413 and answer.json()["error"]["param"] == "items"
    assert (await client.get(f"/v1/conversations/{made['id']}/items", headers=A)).json()["data"] == []
