"""A request's images: data: URLs, fetched URLs through the cache, format / pixel / decoding checks, errors naming
the part, and the count against the model's and the gateway's limits."""

from __future__ import annotations

import base64
import io
import ipaddress
from collections.abc import Iterator

import pytest
from PIL import Image

from gateway.core.images import ImageLimits, ImageLoader, check_image_count, image_placeholder_for
from gateway.core.request import ImagePart
from gateway.errors import InvalidRequestError
from tests.image_server import ImageServer, Route, image_server, png, png_header_claiming

PARAM = "messages[1].content[2].image_url"
LIMITS = ImageLimits(allowed_networks=(ipaddress.ip_network("127.0.0.2/32"),))


def data_url(data: bytes, media_type: str = "image/png") -> str:
    return f"data:{media_type};base64,{base64.b64encode(data).decode()}"


def noise_png() -> bytes:
    """A PNG of random pixels (it compresses badly, so a cut leaves a header and part of the data)."""
    import os

    out = io.BytesIO()
    Image.frombytes("RGB", (64, 64), os.urandom(64 * 64 * 3)).save(out, "PNG")
    return out.getvalue()


def part(url: str, detail: str = "auto") -> ImagePart:
    return ImagePart(url, detail, PARAM)  # type: ignore[arg-type]


@pytest.fixture
def server() -> Iterator[ImageServer]:
    with image_server("127.0.0.2") as running:
        yield running


async def refusal(loader: ImageLoader, image: ImagePart) -> InvalidRequestError:
    with pytest.raises(InvalidRequestError) as caught:
        await loader.load([image])
    assert caught.value.param == PARAM
    return caught.value


async def test_a_data_url_image_keeps_its_bytes_and_reports_its_size() -> None:
    data = png(20, 10)
    (image,) = await ImageLoader().load([part(data_url(data))])
    assert (image.data, image.media_type, image.width, image.height) == (data, "image/png", 20, 10)


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("data:image/png,notbase64", "data:image/<type>;base64"),
        ("data:text/plain;base64,aGVsbG8=", "text/plain, not an image"),
        ("data:image/png;base64,@@@@", "does not decode"),
        (data_url(b"hello, not an image"), "not a readable image"),
        (data_url(noise_png()[:2000]), "not a readable image"),  # truncated: fails only when decoded whole
        (data_url(png_header_claiming(50_000, 50_000)), "pixels taken"),  # refused from its header
        (data_url(png_header_claiming(5_000, 5_000)), "5000 x 5000 pixels"),
    ],
)
async def test_data_urls_that_are_not_acceptable_images(url: str, says: str) -> None:
    error = await refusal(ImageLoader(), part(url))
    assert says in error.message


async def test_an_image_format_outside_the_four_is_refused() -> None:
    out = io.BytesIO()
    Image.new("RGB", (4, 4)).save(out, "BMP")
    message = (await refusal(ImageLoader(), part(data_url(out.getvalue(), "image/bmp")))).message
    assert "not a readable image: PNG, JPEG, WEBP and GIF images are taken" in message


async def test_the_byte_limit_applies_to_data_urls() -> None:
    loader = ImageLoader(ImageLimits(max_bytes=1024))
    assert "larger than 1024 bytes" in (await refusal(loader, part(data_url(png(200, 200) + b"\0" * 4096)))).message


async def test_low_detail_shrinks_a_large_image_within_512_pixels() -> None:
    (image,) = await ImageLoader().load([part(data_url(png(2048, 1024)), "low")])
    assert (image.width, image.height, image.media_type) == (512, 256, "image/png")
    assert Image.open(io.BytesIO(image.data)).size == (512, 256)


async def test_a_fetched_image_is_checked_and_cached_by_url(server: ImageServer) -> None:
    server.routes["/a.png"] = Route(headers={"content-type": "image/png"}, body=png(6, 6, (0, 0, 255)))
    loader = ImageLoader(LIMITS)
    first = await loader.load([part(server.url("/a.png"))])
    second = await loader.load([part(server.url("/a.png"))])
    assert first == second and first[0].width == 6
    assert len(server.seen) == 1


async def test_a_fetched_non_image_and_a_refused_url_are_400s_naming_the_part(server: ImageServer) -> None:
    server.routes["/fake.png"] = Route(headers={"content-type": "image/png"}, body=b"<html>not an image</html>")
    loader = ImageLoader(LIMITS)
    assert "not a readable image" in (await refusal(loader, part(server.url("/fake.png")))).message
    refused = await refusal(loader, part("http://127.0.0.1:9/x.png"))
    assert refused.code == "invalid_image_url" and "non-public" in refused.message


async def test_several_images_keep_their_order_and_the_first_refusal_is_reported(server: ImageServer) -> None:
    server.routes["/red.png"] = Route(headers={"content-type": "image/png"}, body=png(3, 3, (255, 0, 0)))
    loader = ImageLoader(LIMITS)
    blue = png(5, 5, (0, 0, 255))
    images = await loader.load([part(server.url("/red.png")), part(data_url(blue))])
    assert [image.width for image in images] == [3, 5]
    bad = ImagePart("data:image/png;base64,@@", "auto", "messages[0].content[3].image_url")
    with pytest.raises(InvalidRequestError) as caught:
        await loader.load([part(server.url("/red.png")), bad])
    assert caught.value.param == "messages[0].content[3].image_url"


def test_the_count_is_checked_against_the_model_and_the_gateway() -> None:
    parts = [ImagePart("data:,", "auto", f"messages[0].content[{i}].image_url") for i in range(3)]
    check_image_count([], 16, "m", 0)
    with pytest.raises(InvalidRequestError) as none:
        check_image_count(parts, 16, "m", 0)
    assert none.value.code == "images_not_supported" and none.value.param == "messages[0].content[0].image_url"
    with pytest.raises(InvalidRequestError) as one:
        check_image_count(parts, 16, "m", 1)
    assert "model 'm' takes at most 1" in one.value.message and one.value.param == "messages[0].content[1].image_url"
    with pytest.raises(InvalidRequestError) as gateway:
        check_image_count(parts, 2, "m", 2**31 - 1)
    assert "--max-images" in gateway.value.message and gateway.value.param == "messages[0].content[2].image_url"


def test_the_placeholder_is_the_configured_one_else_the_tokenizers_family() -> None:
    class Vocabulary:
        def __init__(self, tokens: list[str]) -> None:
            self.tokens = tokens

        def get_vocab(self) -> dict[str, int]:
            return {token: index for index, token in enumerate(self.tokens)}

    assert image_placeholder_for(Vocabulary(["<|image|>", "a"])) == "<|image|>"
    assert image_placeholder_for(Vocabulary(["<image>"])) == "<image>"
    assert image_placeholder_for(Vocabulary([])) == "<image>"
    assert image_placeholder_for(Vocabulary(["<|image|>"]), "[IMG]") == "[IMG]"
