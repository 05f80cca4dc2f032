"""Which parsers a chat template implies, when it says so unambiguously.

Tool formats are recognised by the markup the template writes for past calls (or describes to the model);
a template that matches two formats, or none, gives None. Reasoning is recognised by `<think>` in the template,
and the family by its turn markers: DeepSeek's `<｜Assistant｜>` -> `deepseek_r1`, ChatML's `<|im_start|>` ->
`qwen3`, other templates with `<think>` -> None (unknown family).
"""

from __future__ import annotations

from dataclasses import dataclass

_TOOL_MARKERS = (
    ("deepseek_v3", ("<｜tool▁calls▁begin｜>",)),
    ("hermes", ("<tool_call>",)),
    ("mistral", ("[TOOL_CALLS]",)),
    ("llama3_json", ("<|python_tag|>",)),
    ("pythonic", ("<|python_start|>", "[func_name1(")),
)


@dataclass(frozen=True, slots=True)
class DetectedParsers:
    """Parser names for a template (None where it is not clear)."""

    tool: str | None
    reasoning: str | None


def detect_parsers(chat_template: str) -> DetectedParsers:
    """The tool and reasoning parser names that `chat_template` implies."""
    tools = [name for name, markers in _TOOL_MARKERS if any(marker in chat_template for marker in markers)]
    return DetectedParsers(tool=tools[0] if len(tools) == 1 else None, reasoning=_reasoning(chat_template))


def _reasoning(chat_template: str) -> str | None:
    if "<think>" not in chat_template and "</think>" not in chat_template:
        return None
    if "<｜Assistant｜>" in chat_template:
        return "deepseek_r1"
    if "<|im_start|>" in chat_template:
        return "qwen3"
    return None
