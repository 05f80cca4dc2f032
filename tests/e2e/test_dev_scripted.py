"""The `scripted` dev engine, called directly over gRPC: it emits the prompt's script in the served tokens."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from tests.e2e.dev_family_servers import serve_engine
from tests.e2e.test_dev_engine import Engine, word_list

pytestmark = pytest.mark.e2e

# Per family: a script in that family's tool-call markup, and the special token that must stay one id.
SCRIPTS = {
    "qwen": ('<think>\nCheck the weather.\n</think>\n\n<tool_call>\n{"name": "get_weather", "arguments": '
             '{"city": "Paris"}}\n</tool_call>', "<tool_call>"),
    "deepseek": ("<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n"
                 '{"city": "Paris"}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>', "<｜tool▁calls▁begin｜>"),
    "mistral": ('[TOOL_CALLS] [{"name": "get_weather", "arguments": {"city": "Paris"}, "id": "abcDEF123"}]',
                "[TOOL_CALLS]"),
}  # fmt: skip


class Scripted:
    """A scripted engine over one family's tokenizer."""

    def __init__(self, engine: Engine, name: str) -> None:
        self.engine = engine
        self.name = name
        self.tokenizer: PreTrainedTokenizerBase = AutoTokenizer.from_pretrained(engine.model_dir)

    def prompt(self, script: str, before: str = "Hello. ") -> list[int]:
        """A chat prompt (the family's template) whose user message carries the script."""
        messages = [{"role": "user", "content": f"{before}<<script>>{script}<</script>>"}]
        rendered = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return self.tokenizer.encode(rendered, add_special_tokens=False)

    def ids(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False)


@pytest.fixture(scope="module", params=sorted(SCRIPTS))
def scripted(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scripted]:
    for engine in serve_engine(
        tmp_path_factory.mktemp(f"scripted-{request.param}"),
        engine="scripted", family=request.param, synthetic_itl_ms=2.0, max_num_active=8,
    ):  # fmt: skip
        yield Scripted(engine, request.param)


async def test_script_is_emitted_token_by_token_with_real_special_tokens(scripted: Scripted) -> None:
    script, marker = SCRIPTS[scripted.name]
    expected = scripted.ids(script)
    assert scripted.tokenizer.convert_tokens_to_ids(marker) in expected  # the marker is one id of the script
    prompt = scripted.prompt(script)
    stream = await scripted.engine.generate(prompt, 200, streaming=True)
    assert not stream.error
    assert stream.ids == expected
    assert [r["output_ids"].shape for r in stream.responses] == [(1, 1, 1)] * len(expected) + [(1, 1, 0)]
    assert stream.finals == [False] * len(expected) + [True]  # ends as on end_id: an empty final response
    whole = await scripted.engine.generate(prompt, 200, exclude_input_in_output=True)
    assert whole.ids == expected and whole.finals == [True]
    echoed = await scripted.engine.generate(prompt, 200)
    assert echoed.ids == prompt + expected
    assert scripted.tokenizer.decode(whole.ids) == script


async def test_the_last_script_counts_and_limits_apply(scripted: Scripted) -> None:
    prompt = scripted.prompt("the second one", before="<<script>>not this one<</script>> ")
    reply = await scripted.engine.generate(prompt, 200, exclude_input_in_output=True)
    assert reply.ids == scripted.ids("the second one")
    script = SCRIPTS[scripted.name][0]
    expected = scripted.ids(script)
    cut = await scripted.engine.generate(scripted.prompt(script), 3, streaming=True)
    assert cut.ids == expected[:3] and cut.finals == [False, False, True]
    stop = expected[5:7]
    stopped = await scripted.engine.generate(
        scripted.prompt(script), 200, exclude_input_in_output=True, stop_words_list=word_list([stop])
    )
    assert stopped.ids == expected[:7]


async def test_a_prompt_without_a_script_is_refused(scripted: Scripted) -> None:
    reply = await scripted.engine.generate(scripted.ids("no script here <<script>> unterminated"), 8)
    assert "<<script>>" in reply.error


async def test_stop_requests_and_cancellation_end_a_long_script(scripted: Scripted) -> None:
    long_prompt = scripted.prompt(" word" * 3000)
    request_id = f"stop-{uuid.uuid4()}"
    running = scripted.engine.stream(scripted.engine.request(long_prompt, 3000, request_id, streaming=True))
    seen = [await anext(running) for _ in range(3)]
    stop = await scripted.engine.generate([0], 1, request_id, stop=True)
    assert stop.finals == [True] and not stop.error
    async for outputs, final, _ in running:
        seen.append((outputs, final, ""))
        if final:
            break
    await running.aclose()
    assert seen[-1][1] and len(seen) < 3000
    task = asyncio.create_task(scripted.engine.generate(long_prompt, 3000, f"cancel-{uuid.uuid4()}", streaming=True))
    await asyncio.sleep(0.3)
    assert await scripted.engine.running() == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await scripted.engine.wait_idle(within=0.5)
