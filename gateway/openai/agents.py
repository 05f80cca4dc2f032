"""Tools, reasoning and structured outputs of a chat request: what the engine is constrained to, and which
parsers each choice's text goes through.

- `tools` / `tool_choice` / assistant `tool_calls` / `tool` messages are checked (openai/tools.py);
- one guide at most (openai/guides.py): `response_format`, vLLM's `structured_outputs` / `guided_*`, or the
  JSON schema of a forced call (`tool_choice` `required` or a named function); a guide needs an engine that
  enforces it (TensorRT-LLM silently ignores guides without an xgrammar backend): otherwise a 400 that says
  which parameter to fill, before any schema is read;
- tools and guides are bounded on the event loop, then checked in the model's GuideChecker (worker processes,
  a time limit) before anything reaches the template or the engine;
- each choice gets a fresh parser chain (openai/parsers/): reasoning first, then tool calls. With a guide there
  is no reasoning to split off: the guide constrains the output from its first token (TensorRT-LLM has no
  structural tags), so a `<think>` model answers the schema directly;
- a chain that reads markers which are special tokens of the model's tokenizer (Mistral's `[TOOL_CALLS]`) needs
  text with special tokens kept: the engine request says so, and an engine that cannot keep them (an ensemble
  whose postprocessing drops them, and no engine model to call directly) is a 400 that says what to change.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gateway.engine.base import EngineCapabilities, GenerationRequest
from gateway.errors import UnsupportedFeatureError
from gateway.openai.guides import Guide, plan_guide, without_free_whitespace
from gateway.openai.parsers import ParserProcessor, choice_parser
from gateway.openai.processors import Processor, stop_chain
from gateway.openai.protocol import ChatCompletionRequest
from gateway.openai.served_model import ServedModel
from gateway.openai.tools import ToolChoice, ToolSpec, check_tool_history, parse_tool_choice, parse_tools

logger = logging.getLogger(__name__)

GUIDE_FIELDS = ("response_format", "structured_outputs", "guided_json", "guided_regex", "guided_choice",
                "guided_grammar")  # fmt: skip


@dataclass(frozen=True)
class AgentPlan:
    """What a chat request asks beyond plain text."""

    tools: list[ToolSpec]
    tool_choice: ToolChoice
    guide: Guide | None
    keep_special_tokens: bool = False  # the parsers read markers that are special tokens

    def template_tools(self, body: ChatCompletionRequest) -> list[dict[str, Any]] | None:
        """The tools as the chat template takes them (none when the model may not call any)."""
        return body.tools if self.tools and self.tool_choice.mode != "none" else None


async def plan_agent(body: ChatCompletionRequest, model: ServedModel, capabilities: EngineCapabilities) -> AgentPlan:
    """Check the request's tools, history and output constraints; 400 naming the field for what cannot be done."""
    field = requested_guide_field(body)
    if field is not None and not capabilities.guided_decoding:
        raise UnsupportedFeatureError(
            f"'{field}' needs guided decoding, which model '{model.name}' does not enforce: fill "
            "guided_decoding_backend=xgrammar and xgrammar_tokenizer_info_path in the tensorrt_llm model's "
            "config.pbtxt (`trtllm-gateway repo` does), and declare the guided_decoding_guide_type / "
            "guided_decoding_guide inputs",
            param=field,
        )
    checker = model.guide_checker
    tools = parse_tools(body.tools, checker)
    tool_choice = parse_tool_choice(body.tool_choice, tools)
    check_tool_history(body.messages)
    plan = plan_guide(
        tools=tools,
        tool_choice=tool_choice,
        parallel_tool_calls=body.parallel_tool_calls is not False,
        response_format=body.response_format,
        structured_outputs=body.structured_outputs,
        guided_json=body.guided_json,
        guided_regex=body.guided_regex,
        guided_choice=body.guided_choice,
        guided_grammar=body.guided_grammar,
        checker=checker,
    )
    await checker.run([*(tool.check for tool in tools if tool.check is not None), *plan.checks])
    if plan.unenforced:
        logger.info("%s is not enforced: tool_choice is auto, so the model may call a tool instead", plan.unenforced)
    guide = await without_free_whitespace(plan.guide, checker) if model.compact_json_guides else plan.guide
    agent = AgentPlan(tools, tool_choice, guide)
    # Fails now, not per choice, when tools may be called but the model has no tool-call parser.
    parser = choice_parser(**_parser_arguments(agent, model, prompt=""))
    special = [marker for marker in getattr(parser, "markers", ()) if marker in model.special_markers]
    if special and not capabilities.special_tokens:
        raise UnsupportedFeatureError(
            f"Model '{model.name}' writes {', '.join(special)} as special tokens, which its upstream's "
            "postprocessing drops (skip_special_tokens), and its engine model cannot be called directly: set "
            "skip_special_tokens to false in postprocessing's config.pbtxt (`trtllm-gateway repo` does for such "
            "tokenizers), or serve the model in direct mode (triton_model tensorrt_llm)",
            param="tools" if agent.tools and agent.tool_choice.mode == "auto" else "model",
        )
    return dataclasses.replace(agent, keep_special_tokens=bool(special))


def requested_guide_field(body: ChatCompletionRequest) -> str | None:
    """The field that will make the request guided (as plan_guide decides), read without looking into any
    schema, so that a model without guided decoding refuses before any schema work."""
    if body.tool_choice == "required" or isinstance(body.tool_choice, dict):
        return "tool_choice"
    if body.tools and body.tool_choice in (None, "auto"):
        return None  # a content guide would not be applied: the model may call a tool instead
    for field in GUIDE_FIELDS:
        value = getattr(body, field)
        if value is not None and not (field == "response_format" and _is_text_format(value)):
            return field
    return None


def _is_text_format(response_format: Any) -> bool:
    return isinstance(response_format, dict) and response_format.get("type") == "text"


def with_guide(request: GenerationRequest, agent: AgentPlan) -> GenerationRequest:
    """The engine request with the plan's guide."""
    if agent.guide is None:
        return request
    return dataclasses.replace(request, guide_type=agent.guide.type, guide=agent.guide.guide)


def parser_chain(agent: AgentPlan, model: ServedModel) -> Callable[[GenerationRequest], list[Processor]]:
    """For `plan_prompt`: each choice's processors — stop strings on the raw text, then its parsers."""

    def chain_for(request: GenerationRequest) -> list[Processor]:
        parser = choice_parser(**_parser_arguments(agent, model, prompt=request.prompt))
        return stop_chain(request) + ([ParserProcessor(parser)] if parser is not None else [])

    return chain_for


def _parser_arguments(agent: AgentPlan, model: ServedModel, prompt: str) -> dict[str, Any]:
    return {
        "tool_parser": model.tool_parser,
        "reasoning_parser": model.reasoning_parser,
        "tools": agent.tools,
        "tool_choice": agent.tool_choice,
        "guided": agent.guide is not None,
        "prompt": prompt,
    }
