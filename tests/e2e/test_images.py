"""Images through the real Triton: the dev vision stack (the multimodal ensemble or the BLS, the stand-in
`multimodal_encoders`, the scripted engine that says the colours of the images it was given), driven by the
openai SDK (chat and Responses), the anthropic SDK (Messages), LangChain and LiteLLM; image URLs served by local
test servers that record every request, so the SSRF cases show that the gateway fetched nothing it must not.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Callable, Iterator
from pathlib import Path

import openai
import pytest
from PIL import Image

from gateway.devstack import DevStackOptions, TritonServer, dev_triton
from gateway.devstack.dev_vision import FEATURES_PER_IMAGE
from tests.e2e.conftest import GatewayProcess, start_gateway, stop_gateway
from tests.image_server import ImageServer, Route, image_server, png_header_claiming

RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)
SAY_COLOURS = "<<script>>I see <<images>>.<</script>>"
MiB = 1024 * 1024


def png(color: tuple[int, int, int], size: tuple[int, int] = (40, 30)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, "PNG")
    return out.getvalue()


def data_url(data: bytes, media_type: str = "image/png") -> str:
    return f"data:{media_type};base64,{base64.b64encode(data).decode()}"


def image_part(url: str, **extra: str) -> dict[str, object]:
    return {"type": "image_url", "image_url": {"url": url, **extra}}


def ask(*parts: dict[str, object], text: str = SAY_COLOURS) -> list[dict[str, object]]:
    return [{"role": "user", "content": [{"type": "text", "text": text}, *parts]}]


def sdk(gateway: GatewayProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.v1, api_key="unused", max_retries=0, timeout=60)


@pytest.fixture(scope="module")
def vision_triton() -> Iterator[TritonServer]:
    """Triton with the dev vision model: multimodal ensemble, stand-in encoder, scripted engine."""
    with dev_triton(DevStackOptions(engine="scripted", vision=True, synthetic_itl_ms=1)) as server:
        yield server


@pytest.fixture(scope="module")
def allowed() -> Iterator[ImageServer]:
    """Where clients' image URLs point: 127.0.0.2, which the gateways are told they may fetch from."""
    with image_server("127.0.0.2") as server:
        server.routes["/blue.png"] = Route(headers={"content-type": "image/png"}, body=png(BLUE))
        yield server


@pytest.fixture(scope="module")
def private() -> Iterator[ImageServer]:
    """A private service on 127.0.0.1: any request it records is a breach."""
    with image_server("127.0.0.1") as server:
        server.routes["/secret.png"] = Route(headers={"content-type": "image/png"}, body=png(GREEN))
        yield server


def vision_gateway(triton: TritonServer, log_dir: Path, *extra: str) -> GatewayProcess:
    return start_gateway(triton, log_dir, "--image-fetch-allow-networks", "127.0.0.2/32", *extra)


@pytest.fixture(scope="module")
def gateway(vision_triton: TritonServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    """The gateway in front of the multimodal ensemble."""
    process = vision_gateway(vision_triton, tmp_path_factory.mktemp("vision-ensemble"))
    yield process
    stop_gateway(process)


@pytest.fixture(scope="module")
def bls_gateway(vision_triton: TritonServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    """The gateway in front of tensorrt_llm_bls (which calls the encoder for requests with images)."""
    process = vision_gateway(vision_triton, tmp_path_factory.mktemp("vision-bls"), "--triton-model", "tensorrt_llm_bls")
    yield process
    stop_gateway(process)


@pytest.mark.parametrize("which", ["gateway", "bls_gateway"])
def test_a_data_url_and_an_http_url_reach_the_engine_in_order(
    which: str, allowed: ImageServer, request: pytest.FixtureRequest
) -> None:
    gateway: GatewayProcess = request.getfixturevalue(which)
    messages = ask(image_part(data_url(png(RED))), image_part(allowed.url("/blue.png")))
    reply = sdk(gateway).chat.completions.create(model=gateway.model, messages=messages, max_tokens=50)  # type: ignore[arg-type]
    assert reply.choices[0].message.content == "I see #ff0000 #0000ff."
    swapped = ask(image_part(allowed.url("/blue.png"), detail="low"), image_part(data_url(png(RED)), detail="high"))
    reply = sdk(gateway).chat.completions.create(model=gateway.model, messages=swapped, max_tokens=50)  # type: ignore[arg-type]
    assert reply.choices[0].message.content == "I see #0000ff #ff0000."


def test_images_stream_and_count_as_prompt_tokens(gateway: GatewayProcess) -> None:
    client = sdk(gateway)

    def streamed(*colours: tuple[int, int, int]) -> tuple[str, int]:
        parts = [image_part(data_url(png(colour))) for colour in colours]
        stream = client.chat.completions.create(
            model=gateway.model, messages=ask(*parts), max_tokens=50, stream=True,  # type: ignore[arg-type]
            stream_options={"include_usage": True},
        )  # fmt: skip
        chunks = list(stream)
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert chunks[-1].usage is not None
        return text, chunks[-1].usage.prompt_tokens

    one, one_tokens = streamed(GREEN)
    two, two_tokens = streamed(GREEN, RED)
    assert (one, two) == ("I see #00ff00.", "I see #00ff00 #ff0000.")
    # The engine counts each image's prompt-table rows; the text around the (adjacent) images is the same.
    assert two_tokens - one_tokens == FEATURES_PER_IMAGE


def test_text_only_requests_to_a_vision_model_go_through_the_bls(
    gateway: GatewayProcess, bls_gateway: GatewayProcess
) -> None:
    messages = [{"role": "user", "content": "<<script>>just text: <<images>><</script>>"}]
    reply = sdk(bls_gateway).chat.completions.create(model=bls_gateway.model, messages=messages, max_tokens=30)  # type: ignore[arg-type]
    assert reply.choices[0].message.content == "just text: no images"
    # The multimodal ensemble runs the encoder for every request, and NVIDIA's refuses one without an image.
    with pytest.raises(openai.BadRequestError) as refused:
        sdk(gateway).chat.completions.create(model=gateway.model, messages=messages, max_tokens=30)  # type: ignore[arg-type]
    assert "needs an image in every request" in refused.value.body["message"]  # type: ignore[index]


def test_a_model_that_takes_no_images_refuses_them_naming_the_part(
    vision_triton: TritonServer, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # Called directly, tensorrt_llm takes token ids: no image input, no encoder in front of it.
    direct = start_gateway(vision_triton, tmp_path_factory.mktemp("vision-direct"), "--triton-model", "tensorrt_llm")
    try:
        with pytest.raises(openai.BadRequestError) as refused:
            sdk(direct).chat.completions.create(
                model=direct.model,
                messages=ask(image_part(data_url(png(RED)))),
                max_tokens=5,  # type: ignore[arg-type]
            )
    finally:
        stop_gateway(direct)
    assert refused.value.body["param"] == "messages[0].content[1].image_url"  # type: ignore[index]
    assert refused.value.body["code"] == "images_not_supported"  # type: ignore[index]


def input_image(url: str, **extra: str) -> dict[str, object]:
    return {"type": "input_image", "image_url": url, **extra}


def test_responses_take_input_images_in_order_streamed_and_from_history(
    gateway: GatewayProcess, allowed: ImageServer
) -> None:
    client = sdk(gateway)
    content = [{"type": "input_text", "text": SAY_COLOURS}, input_image(data_url(png(RED))),
               input_image(allowed.url("/blue.png"), detail="low")]  # fmt: skip
    first = client.responses.create(model=gateway.model, input=[{"role": "user", "content": content}])  # type: ignore[list-item,misc]
    assert first.output_text == "I see #ff0000 #0000ff."
    with client.responses.stream(model=gateway.model, input=[{"role": "user", "content": content[:2]}]) as stream:  # type: ignore[list-item,misc]
        streamed = stream.get_final_response()
    assert streamed.output_text == "I see #ff0000."
    assert first.usage is not None and streamed.usage is not None
    assert first.usage.input_tokens - streamed.usage.input_tokens >= FEATURES_PER_IMAGE  # the second image's rows
    # The stored response's input brings its images back for the next turn, in their place.
    again = client.responses.create(
        model=gateway.model, input="<<script>>again: <<images>><</script>>", previous_response_id=first.id
    )
    assert again.output_text == "again: #ff0000 #0000ff"
    with pytest.raises(openai.BadRequestError) as refused:
        client.responses.create(
            model=gateway.model,
            input=[{"role": "user", "content": [content[0], input_image("http://169.254.169.254/latest/")]}],  # type: ignore[list-item,misc]
        )
    body: dict[str, str] = refused.value.body  # type: ignore[assignment]
    assert body["param"] == "input[0].content[1].image_url" and "non-public" in body["message"], body


def test_anthropic_image_blocks_in_order_streamed_with_image_tokens(
    gateway: GatewayProcess, allowed: ImageServer
) -> None:
    anthropic = pytest.importorskip("anthropic")
    client = anthropic.Anthropic(base_url=gateway.url, api_key="unused", max_retries=0, timeout=60)
    red = {"type": "base64", "media_type": "image/png", "data": base64.b64encode(png(RED)).decode()}
    content = [{"type": "text", "text": SAY_COLOURS}, {"type": "image", "source": red},
               {"type": "image", "source": {"type": "url", "url": allowed.url("/blue.png")}}]  # fmt: skip
    reply = client.messages.create(model=gateway.model, max_tokens=50, messages=[{"role": "user", "content": content}])
    assert reply.content[0].text == "I see #ff0000 #0000ff."  # type: ignore[union-attr]
    with client.messages.stream(
        model=gateway.model, max_tokens=50, messages=[{"role": "user", "content": content[:2]}]
    ) as stream:
        streamed = stream.get_final_message()
    assert streamed.content[0].text == "I see #ff0000."  # type: ignore[union-attr]
    assert reply.usage.input_tokens - streamed.usage.input_tokens >= FEATURES_PER_IMAGE  # the second image's rows
    # Claude Code's Read of an image file: the image comes back in a tool_result, after the user's own.
    call = {"type": "tool_use", "id": "toolu_1", "name": "Read", "input": {"file_path": "/tmp/blue.png"}}
    blue = {"type": "base64", "media_type": "image/png", "data": base64.b64encode(png(BLUE)).decode()}
    result = {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "image", "source": blue}]}
    loop = [{"role": "user", "content": content[:2]}, {"role": "assistant", "content": [call]},
            {"role": "user", "content": [result]}]  # fmt: skip
    tools = [{"name": "Read", "input_schema": {"type": "object", "properties": {"file_path": {"type": "string"}}}}]
    after = client.messages.create(model=gateway.model, max_tokens=50, messages=loop, tools=tools)  # type: ignore[arg-type]
    assert after.content[0].text == "I see #ff0000 #0000ff."  # type: ignore[union-attr]
    metadata = {"type": "image", "source": {"type": "url", "url": "http://169.254.169.254/latest/"}}
    with pytest.raises(anthropic.BadRequestError) as refused:
        client.messages.create(
            model=gateway.model, max_tokens=5, messages=[{"role": "user", "content": [content[0], metadata]}]
        )
    message = refused.value.body["error"]["message"]  # type: ignore[index]
    assert "messages[0].content[1].source" in message and "non-public" in message, message


# --- fetching safely: every refusal a 400 naming the part, nothing fetched that must not be ----------------------


def refusal(gateway: GatewayProcess, url: str) -> dict[str, str]:
    with pytest.raises(openai.BadRequestError) as refused:
        sdk(gateway).chat.completions.create(model=gateway.model, messages=ask(image_part(url)), max_tokens=5)  # type: ignore[arg-type]
    body: dict[str, str] = refused.value.body  # type: ignore[assignment]
    assert body["param"] == "messages[0].content[1].image_url", body
    return body


def test_loopback_and_metadata_addresses_are_refused_unfetched(gateway: GatewayProcess, private: ImageServer) -> None:
    assert "non-public" in refusal(gateway, private.url("/secret.png"))["message"]
    assert "non-public" in refusal(gateway, private.url("/secret.png", host="localhost"))["message"]
    assert "non-public" in refusal(gateway, "http://169.254.169.254/latest/meta-data/iam/")["message"]
    assert "non-public" in refusal(gateway, "http://[::ffff:127.0.0.1]:9/x.png")["message"]
    assert private.seen == []


def test_a_redirect_to_a_private_address_is_refused_unfollowed(
    gateway: GatewayProcess, allowed: ImageServer, private: ImageServer
) -> None:
    allowed.routes["/moved.png"] = Route(302, headers={"location": private.url("/secret.png")})
    assert "non-public" in refusal(gateway, allowed.url("/moved.png"))["message"]
    assert ("/moved.png", f"127.0.0.2:{allowed.port}") in allowed.seen
    assert private.seen == []


def test_a_decompression_bomb_is_refused_from_its_header(gateway: GatewayProcess, allowed: ImageServer) -> None:
    bomb = png_header_claiming(50_000, 50_000)
    allowed.routes["/bomb.png"] = Route(headers={"content-type": "image/png"}, body=bomb)
    assert "pixels" in refusal(gateway, allowed.url("/bomb.png"))["message"]
    assert "pixels" in refusal(gateway, data_url(bomb))["message"]


def test_a_30_mb_body_is_refused_without_reading_it_all(gateway: GatewayProcess, allowed: ImageServer) -> None:
    sent: list[int] = []

    def body_of(mebibytes: int) -> Callable[[object], None]:
        def write(out: object) -> None:
            chunk = b"\0" * MiB
            for _ in range(mebibytes):
                out.write(chunk)  # type: ignore[attr-defined]
                sent.append(len(chunk))

        return write

    thirty = {"content-type": "image/png", "content-length": str(30 * MiB)}
    allowed.routes["/declared.png"] = Route(headers=thirty, write=body_of(30))
    allowed.routes["/streamed.png"] = Route(headers={"content-type": "image/png", "connection": "close"},
                                            write=body_of(30))  # fmt: skip
    allowed.routes["/endless.png"] = Route(headers={"content-type": "image/png", "connection": "close"},
                                           write=body_of(1024))  # fmt: skip
    # Refused from its Content-Length, before the body is read.
    assert f"(Content-Length {30 * MiB})" in refusal(gateway, allowed.url("/declared.png"))["message"]
    # Without a length: cut off at the limit.
    assert "larger than 20971520 bytes" in refusal(gateway, allowed.url("/streamed.png"))["message"]
    # A body that would go on for 1 GiB: the gateway hangs up at the limit, so the sender stops at the limit plus
    # what the two sockets' buffers took (a 30 MB body can fit in those on Linux: 32 MiB tcp_rmem).
    sent.clear()
    assert "larger than 20971520 bytes" in refusal(gateway, allowed.url("/endless.png"))["message"]
    assert sum(sent) < 20 * MiB + 64 * MiB


def test_what_is_not_an_image_is_refused(gateway: GatewayProcess, allowed: ImageServer) -> None:
    allowed.routes["/page"] = Route(headers={"content-type": "text/html"}, body=b"<html>hello</html>")
    allowed.routes["/lying.png"] = Route(headers={"content-type": "image/png"}, body=b"<html>hello</html>")
    assert "text/html, not an image" in refusal(gateway, allowed.url("/page"))["message"]
    assert "not a readable image" in refusal(gateway, allowed.url("/lying.png"))["message"]
    assert "not a readable image" in refusal(gateway, data_url(b"plain text"))["message"]


# --- clients as their users write images -------------------------------------------------------------------------


def test_langchain_sends_images_as_its_users_do(gateway: GatewayProcess, allowed: ImageServer) -> None:
    chat_openai = pytest.importorskip("langchain_openai").ChatOpenAI
    from langchain_core.messages import HumanMessage

    model = chat_openai(model=gateway.model, base_url=gateway.v1, api_key="unused", max_retries=0, max_tokens=50)
    openai_style = HumanMessage(
        content=[
            {"type": "text", "text": SAY_COLOURS},
            image_part(data_url(png(RED))),
            image_part(allowed.url("/blue.png")),
        ]
    )
    assert model.invoke([openai_style]).content == "I see #ff0000 #0000ff."
    # LangChain's own image blocks (base64 and URL), which langchain-openai turns into image_url parts.
    standard = HumanMessage(
        content=[
            {"type": "text", "text": SAY_COLOURS},
            {
                "type": "image",
                "source_type": "base64",
                "data": base64.b64encode(png(GREEN)).decode(),
                "mime_type": "image/png",
            },
            {"type": "image", "source_type": "url", "url": allowed.url("/blue.png")},
        ]
    )
    assert model.invoke([standard]).content == "I see #00ff00 #0000ff."
    # The same messages over the Responses API (langchain-openai sends input_image parts).
    responses = chat_openai(
        model=gateway.model, base_url=gateway.v1, api_key="unused", max_retries=0, use_responses_api=True
    )
    assert responses.invoke([openai_style]).text == "I see #ff0000 #0000ff."


def test_litellm_sends_images_as_its_users_do(gateway: GatewayProcess, allowed: ImageServer) -> None:
    litellm = pytest.importorskip("litellm")
    messages = ask(image_part(allowed.url("/blue.png")), image_part(data_url(png(GREEN))))
    reply = litellm.completion(
        model=f"openai/{gateway.model}", api_base=gateway.v1, api_key="unused", messages=messages, max_tokens=50
    )
    assert reply.choices[0].message.content == "I see #0000ff #00ff00."
