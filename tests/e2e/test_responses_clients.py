"""The clients that speak the Responses API first, unmodified, through the gateway and the real Triton: the OpenAI
Agents SDK's default model, LangChain's ChatOpenAI(use_responses_api=True), the Vercel AI SDK's openai() provider
(Node) and Codex CLI in `exec` mode, each running a tool call and its result over several turns.

The scripted dev engine on the Qwen-vocabulary dev model answers the last `<<script>>` of its prompt: the user's
message scripts the first call, and each tool's result scripts the next turn.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from gateway.devstack import DevStackOptions, TritonServer, dev_triton
from tests.e2e.conftest import GatewayProcess, start_gateway, stop_gateway

pytestmark = pytest.mark.e2e

NODE_CLIENTS = Path(__file__).parent / "node"
CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
SUNNY = "<<script>>It is sunny in Paris.<</script>>"
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def script(text: str) -> str:
    return f"What is the weather in Paris? <<script>>{text}<</script>>"


@pytest.fixture(scope="module")
def qwen_scripted() -> Iterator[TritonServer]:
    with dev_triton(DevStackOptions(engine="scripted", family="qwen", synthetic_itl_ms=1.0)) as server:
        yield server


@pytest.fixture(scope="module")
def gateway(qwen_scripted: TritonServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    process = start_gateway(qwen_scripted, tmp_path_factory.mktemp("responses-clients"))
    yield process
    stop_gateway(process)


def responses_requests(gateway: GatewayProcess) -> int:
    """How many POST /v1/responses the gateway answered with 200 (its access lines)."""
    return sum("POST /v1/responses 200" in line for line in gateway.log().splitlines())


# --- OpenAI Agents SDK ---------------------------------------------------------------------------------------------


def agents_run_config(gateway: GatewayProcess) -> Any:
    agents = pytest.importorskip("agents")
    client = openai.AsyncOpenAI(base_url=gateway.v1, api_key="unused", max_retries=0, timeout=120)
    # The SDK's default provider, whose default model is the Responses one; no tracing export (no internet here).
    return agents.RunConfig(model_provider=agents.OpenAIProvider(openai_client=client), tracing_disabled=True)


def weather_agent(gateway: GatewayProcess, calls: list[str]) -> Any:
    agents = pytest.importorskip("agents")

    @agents.function_tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        calls.append(city)
        return SUNNY

    return agents.Agent(name="weather", instructions="Answer about the weather.", model=gateway.model,
                        tools=[get_weather])  # fmt: skip


def test_agents_sdk_calls_a_function_tool(gateway: GatewayProcess) -> None:
    agents = pytest.importorskip("agents")
    calls: list[str] = []
    before = responses_requests(gateway)
    result = agents.Runner.run_sync(weather_agent(gateway, calls), script(CALL), run_config=agents_run_config(gateway))
    assert calls == ["Paris"]
    assert result.final_output == "It is sunny in Paris."
    assert responses_requests(gateway) - before == 2  # the call, then the answer: both through /v1/responses


async def test_agents_sdk_streamed(gateway: GatewayProcess) -> None:
    agents = pytest.importorskip("agents")
    calls: list[str] = []
    run = agents.Runner.run_streamed(weather_agent(gateway, calls), script(CALL), run_config=agents_run_config(gateway))
    kinds = [event.data.type async for event in run.stream_events() if event.type == "raw_response_event"]
    assert calls == ["Paris"] and run.final_output == "It is sunny in Paris."
    assert kinds.count("response.completed") == 2 and "response.function_call_arguments.delta" in kinds


# --- LangChain -----------------------------------------------------------------------------------------------------


def test_langchain_responses_api_with_tools(gateway: GatewayProcess) -> None:
    langchain_openai = pytest.importorskip("langchain_openai")
    messages_module = pytest.importorskip("langchain_core.messages")
    model = langchain_openai.ChatOpenAI(model=gateway.model, base_url=gateway.v1, api_key="unused", max_retries=0,
                                        use_responses_api=True).bind_tools([WEATHER_TOOL])  # fmt: skip
    question = messages_module.HumanMessage(script(CALL))
    asked = model.invoke([question])
    [call] = asked.tool_calls
    assert call["name"] == "get_weather" and call["args"] == {"city": "Paris"}
    result = messages_module.ToolMessage(SUNNY, tool_call_id=call["id"])
    answer = model.invoke([question, asked, result])
    assert answer.text == "It is sunny in Paris." and not answer.tool_calls


# --- Node: the Vercel AI SDK --------------------------------------------------------------------------------------


def node_client(*arguments: str, timeout: int = 120) -> str:
    if shutil.which("node") is None or not (NODE_CLIENTS / "node_modules").is_dir():
        pytest.skip("the Node clients are not installed: npm ci --prefix tests/e2e/node (as .ci/run does)")
    done = subprocess.run(["node", *arguments], cwd=NODE_CLIENTS, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def ai_sdk(gateway: GatewayProcess, mode: str, prompt: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(node_client("ai_sdk.mjs", gateway.v1, gateway.model, mode, prompt, SUNNY))
    return result


def test_vercel_ai_sdk_text_and_stream(gateway: GatewayProcess) -> None:
    text = ai_sdk(gateway, "text", script("Sunny and warm."))
    assert (text["text"], text["finishReason"]) == ("Sunny and warm.", "stop")
    assert text["usage"]["outputTokens"] > 0
    streamed = ai_sdk(gateway, "stream", script("Sunny and warm."))
    assert streamed["text"] == "Sunny and warm." and len(streamed["deltas"]) > 1


def test_vercel_ai_sdk_tools(gateway: GatewayProcess) -> None:
    result = ai_sdk(gateway, "tools", script(CALL))
    assert result["calls"] == ["Paris"] and result["steps"] == 2
    assert result["text"] == "It is sunny in Paris." and result["finishReason"] == "stop"


# --- Codex CLI -----------------------------------------------------------------------------------------------------

THINK = "<think>\n{}\n</think>\n\n"


def exec_call(command: str) -> str:
    return '<tool_call>\n{"name": "exec_command", "arguments": {"cmd": "' + command + '"}}\n</tool_call>'


def codex_home(tmp_path: Path, gateway: GatewayProcess) -> Path:
    """A CODEX_HOME whose provider is the gateway over the Responses API. Codex's web_search tool and its
    multi-agent tools (a `namespace` tool) are turned off: the gateway serves function tools only, and refuses
    the others with a 400 naming them."""
    home = tmp_path / "codex-home"
    home.mkdir()
    (home / "config.toml").write_text(
        f'model = "{gateway.model}"\nmodel_provider = "gateway"\nweb_search = "disabled"\n\n'
        "[agents]\nenabled = false\n\n"
        f'[model_providers.gateway]\nname = "trtllm-gateway"\nbase_url = "{gateway.v1}"\nwire_api = "responses"\n'
        "request_max_retries = 0\nstream_max_retries = 0\n"
    )
    return home


def test_codex_exec_runs_tool_calls_over_several_turns(gateway: GatewayProcess, tmp_path: Path) -> None:
    """Codex resends the whole history each turn (store false, its reasoning sealed, its own items without id and
    status): turn one runs `cat step2.txt`, whose output scripts turn two's `cat step3.txt`, whose output scripts
    the final answer."""
    codex = NODE_CLIENTS / "node_modules" / ".bin" / "codex"
    if not codex.exists():
        pytest.skip("Codex CLI is not installed: npm ci --prefix tests/e2e/node (as .ci/run does)")
    work = tmp_path / "work"
    work.mkdir()
    (work / "step2.txt").write_text(
        "<<script>>" + THINK.format("Step two.") + exec_call("cat step3.txt") + "<</script>>"
    )
    (work / "step3.txt").write_text("<<script>>The checks passed: 42.<</script>>")
    prompt = "Run the checks. <<script>>" + THINK.format("Step one.") + exec_call("cat step2.txt") + "<</script>>"
    answer = tmp_path / "answer.txt"
    before = responses_requests(gateway)
    command = [str(codex), "exec", "--json", "--skip-git-repo-check", "--sandbox", "danger-full-access",
               "--output-last-message", str(answer), prompt]  # fmt: skip
    environment = os.environ | {"CODEX_HOME": str(codex_home(tmp_path, gateway)), "NO_COLOR": "1"}
    done = subprocess.run(command, cwd=work, env=environment, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, (done.stdout[-3000:], done.stderr[-3000:], gateway.log()[-3000:])
    assert answer.read_text().strip() == "The checks passed: 42."
    events = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    items = [event["item"] for event in events if event.get("type") == "item.completed"]
    commands = [item["command"] for item in items if item.get("type") == "command_execution"]
    assert len(commands) == 2, events  # each run in the user's shell: "/bin/bash -lc 'cat step2.txt'"
    assert commands[0].endswith("cat step2.txt'") and commands[1].endswith("cat step3.txt'"), commands
    assert responses_requests(gateway) - before == 3
