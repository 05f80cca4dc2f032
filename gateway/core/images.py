"""A conversation's images, from what the client gave (`data:` URLs, http(s) URLs) to checked bytes for the engine.

Each image is read (a `data:` URL decoded, a URL fetched by core/image_fetch.py, a recent one taken from a small
cache by URL), then checked in a worker thread (Pillow: a PNG, JPEG, WEBP or GIF image whose width x height is
within the pixel limit, read from its header before anything is decoded, that then decodes whole). `detail: low`
shrinks an image to at most 512 x 512 pixels (re-encoded), as OpenAI's low detail does. Every refusal is a 400
naming the image's part (`messages[1].content[2].image_url`). The bytes the engine gets are the file's own.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import io
import time
import urllib.parse
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from gateway.core.image_fetch import (
    FetchPolicy,
    ImageFetcher,
    ImageFetchError,
    IPNetwork,
    Resolver,
    system_resolve,
)
from gateway.core.request import ImagePart
from gateway.engine.base import EncodedImage
from gateway.errors import GatewayError, InvalidRequestError, UnsupportedFeatureError

if TYPE_CHECKING:
    from PIL.Image import Image

# Pillow format -> media type: the formats OpenAI takes (PNG, JPEG, WEBP, non-animated GIF: first frame).
MEDIA_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp", "GIF": "image/gif"}
TAKEN_FORMATS = tuple(MEDIA_TYPES)
LOW_DETAIL_SIDE = 512
MLLAMA_PLACEHOLDER = "<|image|>"  # Llama 3.2 Vision's image token
DEFAULT_PLACEHOLDER = "<image>"  # LLaVA's, LLaVA-OneVision's, VILA's (and BLIP-2's in our templates)
CACHE_TTL_S = 300.0  # an image at a URL may change; a cached one is reused this long at most


@dataclass(frozen=True, slots=True)
class ImageLimits:
    """Bounds on a request's images (the `--image-*` flags)."""

    max_bytes: int = 20 * 1024 * 1024  # one image's file, fetched or decoded from a data: URL
    max_pixels: int = 4096 * 4096  # width x height, read before decoding
    max_per_request: int = 16
    fetch_timeout_s: float = 10.0
    max_redirects: int = 3
    allowed_networks: tuple[IPNetwork, ...] = ()  # non-public networks URLs may point to (core/image_fetch.py)
    cache_bytes: int = 64 * 1024 * 1024  # fetched images kept by URL (0: no cache)

    def fetch_policy(self) -> FetchPolicy:
        """The policy the fetcher applies."""
        return FetchPolicy(self.max_bytes, self.fetch_timeout_s, self.max_redirects, self.allowed_networks)


@dataclass(slots=True)
class _Cached:
    image: EncodedImage
    stored: float


@dataclass
class ImageCache:
    """Recently fetched images by (URL, detail), least recently used evicted first, within a byte budget."""

    max_bytes: int
    _entries: OrderedDict[tuple[str, str], _Cached] = field(default_factory=OrderedDict)
    _bytes: int = 0

    def get(self, key: tuple[str, str]) -> EncodedImage | None:
        """A cached image younger than CACHE_TTL_S."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        if time.monotonic() - entry.stored > CACHE_TTL_S:
            self._remove(key)
            return None
        self._entries.move_to_end(key)
        return entry.image

    def put(self, key: tuple[str, str], image: EncodedImage) -> None:
        """Keep an image (one larger than the whole budget is not kept)."""
        if len(image.data) > self.max_bytes:
            return
        if key in self._entries:
            self._remove(key)
        self._entries[key] = _Cached(image, time.monotonic())
        self._bytes += len(image.data)
        while self._bytes > self.max_bytes:
            self._remove(next(iter(self._entries)))

    def _remove(self, key: tuple[str, str]) -> None:
        self._bytes -= len(self._entries.pop(key).image.data)


class ImageLoader:
    """Reads and checks the images of requests, under ImageLimits (one per gateway process, shared by models)."""

    def __init__(self, limits: ImageLimits | None = None, resolve: Resolver = system_resolve) -> None:
        self.limits = limits or ImageLimits()
        self._fetcher = ImageFetcher(self.limits.fetch_policy(), resolve)
        self._cache = ImageCache(self.limits.cache_bytes)

    async def load(self, parts: Sequence[ImagePart]) -> tuple[EncodedImage, ...]:
        """Every part's image, in order; the first refusal (a 400 naming its part) cancels the others."""
        if len(parts) == 1:
            return (await self.load_one(parts[0]),)
        try:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(self.load_one(part)) for part in parts]
        except* GatewayError as errors:
            raise errors.exceptions[0] from None
        return tuple(task.result() for task in tasks)

    async def load_one(self, part: ImagePart) -> EncodedImage:
        """One part's image, checked."""
        if part.url.startswith("data:"):
            return await asyncio.to_thread(checked_image, decode_data_url(part, self.limits), part, self.limits)
        key = (part.url, part.detail)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        try:
            body = await self._fetcher.fetch(part.url)
        except ImageFetchError as exc:
            raise InvalidRequestError(f"{exc}", param=part.param, code="invalid_image_url") from None
        image = await asyncio.to_thread(checked_image, body.data, part, self.limits)
        self._cache.put(key, image)
        return image

    async def close(self) -> None:
        """Release the fetcher's transport."""
        await self._fetcher.close()


def image_placeholder_for(tokenizer: object, configured: str | None = None) -> str:
    """The configured placeholder, else the family's: `<|image|>` for a tokenizer that has it, else `<image>`."""
    if configured:
        return configured
    get_vocab = getattr(tokenizer, "get_vocab", None)
    vocabulary = get_vocab() if callable(get_vocab) else {}
    return MLLAMA_PLACEHOLDER if MLLAMA_PLACEHOLDER in vocabulary else DEFAULT_PLACEHOLDER


def decode_data_url(part: ImagePart, limits: ImageLimits) -> bytes:
    """The bytes of a `data:image/...;base64,` URL."""
    header, comma, payload = part.url.partition(",")
    if not comma or not header.endswith(";base64"):
        raise invalid_image(part, "a data: URL must be `data:image/<type>;base64,<data>`")
    media_type = header[len("data:") : -len(";base64")].split(";")[0].lower()
    if not media_type.startswith("image/"):
        raise invalid_image(part, f"the data: URL holds {media_type or 'untyped data'}, not an image")
    if len(payload) > (limits.max_bytes + 2) // 3 * 4 + 4:
        raise invalid_image(part, f"the image is larger than {limits.max_bytes} bytes")
    try:
        return base64.b64decode(urllib.parse.unquote(payload) if "%" in payload else payload, validate=True)
    except (binascii.Error, ValueError):
        raise invalid_image(part, "the data: URL's base64 data does not decode") from None


def checked_image(data: bytes, part: ImagePart, limits: ImageLimits) -> EncodedImage:
    """The image in `data` after the format, pixel-count and decoding checks (runs in a worker thread)."""
    from PIL import Image  # Pillow loads its plugins on first use; only image requests pay for that

    if len(data) > limits.max_bytes:
        raise invalid_image(part, f"the image is larger than {limits.max_bytes} bytes")
    try:
        # Only the four decoders ever see client data (Pillow would try some forty formats otherwise).
        with Image.open(io.BytesIO(data), formats=TAKEN_FORMATS) as image:
            media_type = MEDIA_TYPES[image.format or ""]
            width, height = image.size
            if width * height > limits.max_pixels:
                raise invalid_image(
                    part, f"the image has {width} x {height} pixels, more than the {limits.max_pixels} taken"
                )
            image.load()  # decodes it all: a truncated or corrupt image fails here, not in the model
            if part.detail == "low" and max(width, height) > LOW_DETAIL_SIDE:
                return shrunk(image, media_type)
    except Image.DecompressionBombError:
        raise invalid_image(part, f"the image has more than the {limits.max_pixels} pixels taken") from None
    except Image.UnidentifiedImageError:
        raise invalid_image(
            part, "the data is not a readable image: PNG, JPEG, WEBP and GIF images are taken"
        ) from None
    except (OSError, SyntaxError, ValueError) as exc:  # what Pillow raises for data it cannot read
        raise invalid_image(part, f"the data is not a readable image ({type(exc).__name__})") from None
    return encoded(data, media_type, width, height)


def encoded(data: bytes, media_type: str, width: int, height: int) -> EncodedImage:
    """The checked image, with its base64 text and digest computed here (in the worker thread)."""
    return EncodedImage(data, media_type, width, height, base64.b64encode(data), hashlib.sha256(data).digest())


def shrunk(image: Image, media_type: str) -> EncodedImage:
    """`detail: low`: the image within 512 x 512 pixels, re-encoded (JPEG stays JPEG, anything else PNG)."""
    small = image.convert("RGB") if media_type == "image/jpeg" else image.copy()
    small.thumbnail((LOW_DETAIL_SIDE, LOW_DETAIL_SIDE))
    out = io.BytesIO()
    kind = "JPEG" if media_type == "image/jpeg" else "PNG"
    small.save(out, kind)
    return encoded(out.getvalue(), MEDIA_TYPES[kind], small.width, small.height)


def invalid_image(part: ImagePart, message: str) -> InvalidRequestError:
    """A 400 naming the image's part."""
    return InvalidRequestError(message, param=part.param, code="invalid_image")


def check_image_count(parts: Sequence[ImagePart], limit: int, model: str, capability: int) -> None:
    """400 naming the first image beyond what the model's upstream (`capability`) or the gateway (`limit`) takes."""
    if not parts:
        return
    if capability == 0:
        raise UnsupportedFeatureError(
            f"model '{model}' takes no images: its Triton model declares no image input (serve a vision model "
            "through its multimodal ensemble or BLS)",
            param=parts[0].param,
            code="images_not_supported",
        )
    most = min(limit, capability)
    if len(parts) > most:
        whose = f"model '{model}'" if capability < limit else "this gateway (--max-images)"
        raise InvalidRequestError(
            f"{whose} takes at most {most} image(s) per request; this request has {len(parts)}",
            param=parts[most].param,
            code="too_many_images",
        )
