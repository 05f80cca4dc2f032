"""Claude Code (`@anthropic-ai/claude-code` from npm, pinned in tests/e2e/node) in print mode against the gateway on
the real Triton: `ANTHROPIC_BASE_URL` at the gateway, an API key the gateway checks, and a model it serves.

The scripted engine on the Qwen-vocabulary dev model says what the last `<<script>>` span of the prompt says. The
first turn's script (in the user's prompt) thinks and calls Claude Code's own Read tool on a file; Claude Code runs
the tool, and the file's content, which holds the next script, comes back as the tool result: the second turn's
answer can only be that text if the call was made, run, and its result sent back (with the signed thinking).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.devstack import DevStackOptions, dev_triton
from tests.e2e.conftest import GatewayProcess, start_gateway, stop_gateway

pytestmark = pytest.mark.e2e

KEY = "sk-e2e-claude-code"
CLAUDE = Path(__file__).parent / "node" / "node_modules" / ".bin" / "claude"
ANSWER = "The notes say the build is green."


@pytest.fixture(scope="module")
def qwen_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    if not CLAUDE.exists():
        pytest.skip("Claude Code is not installed: npm ci --prefix tests/e2e/node (as .ci/run does)")
    with dev_triton(DevStackOptions(engine="scripted", family="qwen", synthetic_itl_ms=1.0)) as server:
        process = start_gateway(server, tmp_path_factory.mktemp("claude-code"), "--api-keys", KEY)
        yield process
        stop_gateway(process)


def run_claude(gateway: GatewayProcess, workdir: Path, prompt: str) -> dict[str, object]:
    """`claude -p PROMPT --output-format json` in `workdir`, with its home there too; its JSON result."""
    home = workdir / "home"
    home.mkdir(exist_ok=True)
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "ANTHROPIC_BASE_URL": gateway.url,
        "ANTHROPIC_API_KEY": KEY,
        "DISABLE_AUTOUPDATER": "1",
        "DISABLE_TELEMETRY": "1",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    }
    command = [str(CLAUDE), "-p", prompt, "--output-format", "json", "--model", gateway.model]
    done = subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True, timeout=240, check=False)
    assert done.returncode == 0, f"claude exited {done.returncode}:\n{done.stdout}\n{done.stderr}\n{gateway.log()}"
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_claude_code_calls_its_read_tool_and_answers_with_the_result(
    qwen_gateway: GatewayProcess, tmp_path: Path
) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text(f"<<script>>{ANSWER}<</script>>\n")
    call = json.dumps({"name": "Read", "arguments": {"file_path": str(notes)}})
    script = f"<think>\nThe notes are in a file: read it.\n</think>\n\n<tool_call>\n{call}\n</tool_call>"
    result = run_claude(qwen_gateway, tmp_path, f"What do my notes say? <<script>>{script}<</script>>")
    assert result["is_error"] is False and result["subtype"] == "success"
    assert result["result"] == ANSWER
    assert result["num_turns"] == 2
    usage = result["usage"]
    assert isinstance(usage, dict) and usage["input_tokens"] > 1000  # Claude Code's own system prompt and tools
    lines = [line for line in qwen_gateway.log().splitlines() if "POST /v1/messages " in line]
    finishes = [re.search(r"finish_reason=(\w+)", line).group(1) for line in lines]  # type: ignore[union-attr]
    assert finishes[-2:] == ["tool_calls", "stop"], lines
    assert all(" 200 " in line and "stream=True" in line for line in lines[-2:])
