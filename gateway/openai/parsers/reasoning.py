"""Reasoning parsers: `<think>` ... `</think>` as `reasoning_content`, the rest as content.

- `deepseek_r1` (DeepSeek R1, V3.1 thinking, QwQ, Qwen3 "Thinking" models): the answer starts inside the
  reasoning, because the chat template's generation prompt already opened it; `<think>` may still be emitted.
  With no `</think>` at all, everything is reasoning.
- `qwen3` (Qwen3 hybrid models): reasoning only if the answer starts with `<think>`; with thinking switched off
  (`enable_thinking=False`), the answer has no tags and is all content.

Whether a prompt opened the reasoning can be read from the rendered prompt (`prompt_opens_reasoning`), which
settles both families, and thinking switched off by a template that writes `<think></think>` into the prompt.
Leading whitespace before `<think>`, and right after `</think>`, is dropped; the reasoning is kept as written.
"""

from __future__ import annotations

from typing import ClassVar

from gateway.openai.events import OutputEvent, ReasoningEvent, TextEvent
from gateway.openai.parsers.base import partial_tail

OPEN = "<think>"
CLOSE = "</think>"


def prompt_opens_reasoning(prompt: str) -> bool:
    """Whether a rendered prompt ends inside an open `<think>` (the answer then starts in the reasoning)."""
    tail = prompt.rstrip()
    return tail.endswith(OPEN)


class ThinkReasoningParser:
    """Splits the answer at `</think>`; `start_in_reasoning` says whether it begins inside the reasoning."""

    __slots__ = ("_buf", "_state", "_strip", "name", "start_in_reasoning")
    markers: ClassVar[tuple[str, ...]] = (OPEN, CLOSE)  # the markup it reads: it must survive detokenization

    def __init__(self, name: str, *, start_in_reasoning: bool) -> None:
        self.name = name
        self.start_in_reasoning = start_in_reasoning
        self._buf = ""
        self._state = "start"  # start -> reasoning -> content
        self._strip = False

    def feed(self, text: str) -> list[OutputEvent]:
        """Take the next piece of generated text; return its reasoning and content events."""
        if self._state == "content" and not self._strip:
            return [TextEvent(text)] if text else []
        self._buf += text
        return self._run(final=False)

    def finish(self) -> list[OutputEvent]:
        """The end of the generation: what is held goes where it was heading."""
        return self._run(final=True)

    def _run(self, final: bool) -> list[OutputEvent]:
        out: list[OutputEvent] = []
        if self._state == "start":
            view = self._buf.lstrip()
            if view.startswith(OPEN):
                self._buf, self._state = view[len(OPEN) :], "reasoning"
            elif not final and OPEN.startswith(view):
                return out
            else:
                self._state = "reasoning" if self.start_in_reasoning else "content"
        if self._state == "reasoning":
            end = self._buf.find(CLOSE)
            if end < 0:
                keep = 0 if final else partial_tail(self._buf, CLOSE)
                reasoning, self._buf = self._buf[: len(self._buf) - keep], self._buf[len(self._buf) - keep :]
                if reasoning:
                    out.append(ReasoningEvent(reasoning))
                return out
            if end:
                out.append(ReasoningEvent(self._buf[:end]))
            self._buf, self._state, self._strip = self._buf[end + len(CLOSE) :], "content", True
        text, self._buf = self._buf, ""
        if self._strip:
            text = text.lstrip()
            self._strip = not text
        if text:
            out.append(TextEvent(text))
        return out
