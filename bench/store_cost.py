"""`python -m bench.store_cost`: what the store costs a request, in-process, on SQLite and on PostgreSQL.

Per stored response: the write when it ends (a turn of a `previous_response_id` chain: its record, and its
thread's expiry renewed), the read of a 10-turn chain a next turn brings in, a conversation turn (its input and
output appended), and a background response's batch of 50 streamed events. Each is timed over `--ops`
operations per round, interleaved across `--rounds` rounds; the medians of the rounds' µs per operation are
printed. PostgreSQL is a server this command starts (the Debian package's programs) unless `--postgres-url`
names one; `--backends sqlite` skips it.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from contextlib import ExitStack
from pathlib import Path

import orjson

from gateway.state import ConversationRecord, EventRecord, ItemRecord, ResponseRecord, Store, StoreConfig, open_store

OWNER = "key:bench"
INPUT = orjson.dumps(
    [{"type": "message", "id": "msg_in", "role": "user", "content": [{"type": "input_text", "text": "x" * 400}]}]
)
BODY = orjson.dumps({"id": "resp", "object": "response", "status": "completed", "output": [{"text": "y" * 1500}]})


def record(response_id: str, previous: str | None, thread: str) -> ResponseRecord:
    """A response of about 2 KB, as a short chat turn stores."""
    now = time.time()
    return ResponseRecord(response_id, OWNER, now, "completed", BODY, INPUT, previous, None, thread, False, now + 86400)


async def measure(store: Store, ops: int, round_index: int) -> dict[str, float]:
    """µs per operation of each kind, for one round."""
    prefix = f"r{round_index}"
    results: dict[str, float] = {}
    counter = iter(range(10**9))

    async def timed(name: str, make: Callable[[], Awaitable[object]]) -> None:
        started = time.perf_counter()
        for _ in range(ops):
            await make()
        results[name] = (time.perf_counter() - started) / ops * 1e6

    root = f"{prefix}-root"
    await store.responses.put(record(root, None, root))
    previous = root
    for turn in range(9):
        previous_id, previous = previous, f"{prefix}-turn{turn}"
        await store.responses.put(record(previous, previous_id, root))

    async def write_turn() -> None:
        await store.responses.put(record(f"{prefix}-w{next(counter)}", previous, root))

    await timed("response write (a chain's turn)", write_turn)
    await timed("chain read (10 turns)", lambda: store.responses.chain(previous, OWNER))
    conversation = ConversationRecord(f"{prefix}-conv", OWNER, time.time(), b"{}")
    await store.conversations.create(conversation, [], None, "items")

    async def conversation_turn() -> None:
        n = next(counter)
        items = [ItemRecord(f"{prefix}-i{n}a", INPUT), ItemRecord(f"{prefix}-i{n}b", BODY)]
        await store.conversations.append(conversation.id, OWNER, items, time.time(), None, "conversation")

    await timed("conversation turn (2 items appended)", conversation_turn)
    events_of = f"{prefix}-bg"
    await store.responses.put(record(events_of, None, events_of))

    async def event_batch() -> None:
        start = next(counter) * 50
        batch = [EventRecord(start + k, "response.output_text.delta", b'{"delta":"tok"}') for k in range(50)]
        await store.responses.add_events(events_of, batch)

    await timed("background events (a batch of 50)", event_batch)
    return results


async def bench(url: str, ops: int, rounds: int) -> dict[str, float]:
    """Median µs per operation over the rounds."""
    store = await open_store(StoreConfig(url=url))
    try:
        per_round = [await measure(store, ops, index) for index in range(rounds)]
    finally:
        await store.close()
    return {name: statistics.median(r[name] for r in per_round) for name in per_round[0]}


def main() -> None:
    """Run the benchmark and print a table."""
    parser = argparse.ArgumentParser(prog="python -m bench.store_cost", description=__doc__)
    parser.add_argument("--ops", type=int, default=200, help="operations of each kind per round")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--postgres-url", help="an existing server's database (default: start one)")
    args = parser.parse_args()
    with ExitStack() as stack:
        urls = {}
        for backend in args.backends.split(","):
            if backend == "sqlite":
                folder = stack.enter_context(tempfile.TemporaryDirectory())
                urls[backend] = f"sqlite://{Path(folder) / 'store.sqlite3'}"
            else:
                from tests.postgres_server import postgres_server

                urls[backend] = args.postgres_url or stack.enter_context(postgres_server())
        results = {backend: asyncio.run(bench(url, args.ops, args.rounds)) for backend, url in urls.items()}
    names = list(next(iter(results.values())))
    print(f"{'µs per operation (median of rounds)':42}" + "".join(f"{b:>12}" for b in results))
    for name in names:
        print(f"{name:42}" + "".join(f"{results[b][name]:12.0f}" for b in results))


if __name__ == "__main__":
    main()
