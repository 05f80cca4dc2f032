"""Tools, reasoning and output constraints of a conversation: what the engine is constrained to, and which parsers
each choice's text goes through.

- the tools and the tool-call history of the turns are checked (core/tools.py);
- one guide at most (core/guides.py): the request's output constraint, or the JSON schema of a forced call (tool
  choice `required` or a named function). A forced call wins over a constraint (which applies to content, and
  there is none); with tools the model may call (`auto`) a constraint would stop it from calling any, so it is not
  applied (and logged). A guide needs an engine that enforces it (TensorRT-LLM silently ignores guides without an
  xgrammar backend): otherwise a 400 naming the field that asked for it, before any schema is read;
- tools and guides are bounded on the event loop, then checked in the model's GuideChecker (worker processes, a
  time limit) before anything reaches the template or the engine;
- each choice gets a fresh parser chain (core/parsers/): reasoning first, then tool calls. With a guide there is
  no reasoning to split off: the guide constrains the output from its first token (TensorRT-LLM has no structural
  tags), so a `<think>` model answers the schema directly;
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

from gateway.core.guide_checker import GuideCheck
from gateway.core.guides import Guide, constraint_guide, tool_choice_guide, without_free_whitespace
from gateway.core.parsers import ParserProcessor, choice_parser
from gateway.core.processors import Processor, stop_chain
from gateway.core.request import ConversationRequest, OutputConstraint, ToolOptions
from gateway.core.served_model import ServedModel
from gateway.core.tools import callable_tools, check_tool_history, check_tools, template_tools
from gateway.engine.base import EngineCapabilities, GenerationRequest
from gateway.errors import UnsupportedFeatureError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class AgentPlan:
    """What a conversation asks beyond plain text."""

    tools: ToolOptions
    guide: Guide | None
    keep_special_tokens: bool = False  # the parsers read markers that are special tokens

    def template_tools(self) -> list[dict[str, Any]] | None:
        """The tools as the chat template takes them (none when the model may not call any)."""
        return template_tools(self.tools)


async def plan_agent(request: ConversationRequest, model: ServedModel, capabilities: EngineCapabilities) -> AgentPlan:
    """Check the request's tools, history and output constraint; 400 naming the field for what cannot be done."""
    tools, constraint = request.tools, request.constraint
    field = requested_guide_field(tools, constraint)
    if field is not None and not capabilities.guided_decoding:
        raise UnsupportedFeatureError(
            f"'{field}' needs guided decoding, which model '{model.name}' does not enforce: fill "
            "guided_decoding_backend=xgrammar and xgrammar_tokenizer_info_path in the tensorrt_llm model's "
            "config.pbtxt (`trtllm-gateway repo` does), and declare the guided_decoding_guide_type / "
            "guided_decoding_guide inputs",
            param=field,
        )
    checker = model.guide_checker
    checks: list[GuideCheck] = check_tools(tools, checker)
    check_tool_history(request.conversation)
    guide = constraint_guide(constraint, checker) if constraint is not None else None
    if guide is not None and guide.check is not None:
        checks.append(guide.check)  # checked even when it is not applied: a bad schema is a 400 either way
    if tools.choice.forced:
        guide = tool_choice_guide(callable_tools(tools), tools.choice, tools.parallel, checker, tools.param)
        if guide.check is not None:
            checks.append(guide.check)
    elif constraint is not None and field is None:
        logger.info("%s is not enforced: tool_choice is auto, so the model may call a tool instead", constraint.field)
        guide = None
    await checker.run(checks)
    if guide is not None and model.compact_json_guides:
        guide = await without_free_whitespace(guide, checker)
    agent = AgentPlan(tools, guide)
    # Fails now, not per choice, when tools may be called but the model has no tool-call parser.
    parser = choice_parser(**_parser_arguments(agent, model, prompt=""))
    special = [marker for marker in getattr(parser, "markers", ()) if marker in model.special_markers]
    if special and not capabilities.special_tokens:
        raise UnsupportedFeatureError(
            f"Model '{model.name}' writes {', '.join(special)} as special tokens, which its upstream's "
            "postprocessing drops (skip_special_tokens), and its engine model cannot be called directly: set "
            "skip_special_tokens to false in postprocessing's config.pbtxt (`trtllm-gateway repo` does for such "
            "tokenizers), or serve the model in direct mode (triton_model tensorrt_llm)",
            param="tools" if tools.specs and tools.choice.mode == "auto" else "model",
        )
    return dataclasses.replace(agent, keep_special_tokens=bool(special))


def requested_guide_field(tools: ToolOptions, constraint: OutputConstraint | None) -> str | None:
    """The field that will make the request guided (as plan_agent decides), read without looking into any
    schema, so that a model without guided decoding refuses before any schema work."""
    if tools.choice.forced:
        return tools.choice_param
    if constraint is None or (tools.specs and tools.choice.mode == "auto"):
        return None  # a content guide would not be applied: the model may call a tool instead
    return constraint.field


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
        "tools": callable_tools(agent.tools),
        "tool_choice": agent.tools.choice,
        "guided": agent.guide is not None,
        "prompt": prompt,
    }
