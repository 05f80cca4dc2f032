"""`python -m bench.parser_cost`: CPU per streamed piece of the tool-call and reasoning parsers, in-process.

Each parser is fed a long answer in token-sized pieces (3-5 characters): once plain prose (the path every token of
a choice takes when no call comes), once prose with tool calls in the parser's format. The figure is the best of
several rounds, divided by the number of pieces, next to the cost of making one `TextEvent` per piece.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from gateway.core.events import TextEvent
from gateway.core.parsers import StreamParser, chain, make_reasoning_parser, make_tool_parser

_PROSE = (
    "The forecast for Paris shows light rain in the morning, clearing by noon; temperatures stay near 14 degrees "
    "and the wind comes from the west at 10 km/h. If a < b then the answer follows from step 2. "
)
_CALLS = {
    "hermes": '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "days": 3}}\n</tool_call>',
    "llama3_json": '<|python_tag|>{"name": "get_weather", "parameters": {"city": "Paris", "days": 3}}',
    "mistral": '[TOOL_CALLS]get_weather[ARGS]{"city": "Paris", "days": 3}',
    "deepseek_v3": (
        '<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n{"city": "Paris", '
        '"days": 3}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>'
    ),
    "pythonic": '[get_weather(city="Paris", days=3), get_time(tz="UTC")]',
}


def _pieces(text: str) -> list[str]:
    """`text` in pieces of 3, 4 and 5 characters in turn, like detokenized tokens."""
    pieces, i, sizes = [], 0, (3, 4, 5)
    while i < len(text):
        size = sizes[len(pieces) % 3]
        pieces.append(text[i : i + size])
        i += size
    return pieces


def _cost(make: Callable[[], StreamParser], pieces: list[str], rounds: int) -> float:
    """Best µs per piece over `rounds` runs of one fresh parser through all pieces."""
    best = float("inf")
    for _ in range(rounds):
        parser = make()
        start = time.perf_counter()
        for piece in pieces:
            parser.feed(piece)
        parser.finish()
        best = min(best, time.perf_counter() - start)
    return best / len(pieces) * 1e6


class _Baseline:
    """One TextEvent per piece: what any processor costs at least."""

    def feed(self, text: str) -> list[TextEvent]:
        return [TextEvent(text)]

    def finish(self) -> list[TextEvent]:
        return []


def main() -> None:
    """CLI entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chars", type=int, default=100_000, help="length of the answer fed to each parser")
    parser.add_argument("--rounds", type=int, default=9, help="best of this many rounds")
    args = parser.parse_args()
    repeat = args.chars // len(_PROSE) + 1
    plain = _pieces((_PROSE * repeat)[: args.chars])
    print(f"µs per piece, {len(plain)} pieces of 3-5 characters, best of {args.rounds}")
    print(f"{'parser':<22}{'no markup':>12}{'with calls':>12}")
    print(f"{'(one TextEvent)':<22}{_cost(_Baseline, plain, args.rounds):>12.3f}")
    for name, call in _CALLS.items():
        # pythonic calls only open an answer: one list, then prose; the others: a call after every paragraph.
        marked = call + _PROSE * repeat if name == "pythonic" else (_PROSE + call) * (args.chars // len(_PROSE + call))
        with_calls = _pieces(marked)
        no_markup = _cost(lambda name=name: make_tool_parser(name), plain, args.rounds)
        calls = _cost(lambda name=name: make_tool_parser(name), with_calls, args.rounds)
        print(f"{name:<22}{no_markup:>12.3f}{calls:>12.3f}")
    thinking = _pieces("<think>" + _PROSE * (repeat // 2) + "</think>" + (_PROSE + _CALLS["hermes"]) * (repeat // 4))
    both = _cost(lambda: chain(make_reasoning_parser("qwen3"), make_tool_parser("hermes")), thinking, args.rounds)
    plain_chain = _cost(lambda: chain(make_reasoning_parser("qwen3"), make_tool_parser("hermes")), plain, args.rounds)
    print(f"{'qwen3 + hermes':<22}{plain_chain:>12.3f}{both:>12.3f}")


if __name__ == "__main__":
    main()
