"""Images for the `preprocessing` model: the vision encoder's inputs, and each image's place in the input ids.

The gateway sends a rendered prompt with one placeholder per image and the images as `data:` URLs
(`IMAGE_URL`, one per image, in prompt order); raw pixel tensors (`IMAGE_BYTES`, NVIDIA's `[batch, images, H, W,
C]` or `C, H, W`) are taken too. Nothing is fetched here: any other URL is refused.

The family comes from the vision engine's `config.json` (`builder_config.model_type`), as in NVIDIA's model:
- prompt-table families (`llava`, `vila`, `blip2-opt`, `llava_onevision`): the prompt is cut at each `<image>`
  and the image's rows of the encoder's prompt table go there as ids `vocab_size + k` (k counts on over the
  request's images); `PIXEL_VALUES` (and `IMAGE_SIZES` for LLaVA-OneVision) feed `multimodal_encoders`. Features
  per image: `max_prompt_embedding_table_size // max_batch_size // max_num_images` of the LLM engine's
  `config.json` (NVIDIA's formula), or the image processor's count for LLaVA-OneVision (any resolution);
- `mllama`: `<|image|>` stays a token (the model cross-attends to the images); the processor gives
  `PIXEL_VALUES`, `ASPECT_RATIO_IDS`, `ASPECT_RATIO_MASK` and `CROSS_ATTENTION_MASK`, and the input ids.
Unlike NVIDIA's model, no prompt wrapping is added (the chat template did it) and images stay where they are.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

TABLE_FAMILIES = {"llava", "vila", "blip2-opt", "blip2", "llava_onevision"}
PLACEHOLDERS = {"mllama": "<|image|>"}  # every other family: <image>
MAX_PIXELS = 4096 * 4096 * 4  # a backstop; the gateway checks its own (smaller) limit before sending

Encode = Callable[[str, bool], list[int]]  # text, whether it starts the prompt (special tokens as configured) -> ids


def decode_image(value: bytes | str) -> Any:
    """A `data:image/...;base64,` URL as an RGB PIL image."""
    from PIL import Image

    text = value.decode("utf-8") if isinstance(value, bytes) else value
    header, _, payload = text.partition(",")
    if not text.startswith("data:image/") or not header.endswith(";base64"):
        raise ValueError("IMAGE_URL takes data:image/...;base64 URLs only (this preprocessing fetches nothing)")
    image = Image.open(io.BytesIO(base64.b64decode(payload, validate=True)))
    if image.width * image.height > MAX_PIXELS:
        raise ValueError(f"an image of {image.width} x {image.height} pixels is too large")
    return image.convert("RGB")


def images_from_pixels(pixels: np.ndarray) -> list[Any]:
    """NVIDIA's IMAGE_BYTES row ([images, H, W, C] or [images, C, H, W], uint8) as PIL images."""
    from PIL import Image

    channels_first = pixels.shape[1] in (1, 3) and pixels.shape[-1] not in (1, 3)
    return [Image.fromarray(np.moveaxis(image, 0, -1) if channels_first else image).convert("RGB") for image in pixels]


def read_json(path: Path) -> dict[str, Any]:
    """A config.json, or a clear error naming it."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read {path}: {exc}") from exc


@dataclass
class VisionPreprocessor:
    """One vision family's image processing and placeholder expansion."""

    family: str
    processor: Any  # a Hugging Face image processor (a full processor for mllama and LLaVA-OneVision)
    vocab_size: int  # the LLM's: prompt-table ids start here
    features_per_image: int  # prompt-table rows per image (fixed-resolution families)
    max_images: int
    add_special_tokens: bool = False  # the model's setting (mllama's processor tokenizes the whole prompt)

    @property
    def placeholder(self) -> str:
        """What marks an image's place in the prompt."""
        return PLACEHOLDERS.get(self.family, "<image>")

    @classmethod
    def load(
        cls, vision_engine: str, engine_dir: str, processor_dir: str, max_images: int, add_special_tokens: bool
    ) -> VisionPreprocessor:
        """Read the family, the LLM's table geometry and the image processor (NVIDIA's parameters)."""
        family = read_json(Path(vision_engine) / "config.json")["builder_config"]["model_type"]
        if family not in TABLE_FAMILIES and family != "mllama":
            raise ValueError(
                f"vision family {family!r} is not supported (llava, vila, blip2-opt, llava_onevision, mllama)"
            )
        llm = read_json(Path(engine_dir) / "config.json")
        build = llm.get("build_config", {})
        table_rows = int(build.get("max_prompt_embedding_table_size", 0))
        features = table_rows // max(1, int(build.get("max_batch_size", 1))) // max(1, max_images)
        if family in TABLE_FAMILIES - {"llava_onevision"} and features < 1:
            raise ValueError(f"{engine_dir}/config.json has no max_prompt_embedding_table_size (--max_multimodal_len)")
        from transformers import AutoImageProcessor, AutoProcessor

        whole = family in ("mllama", "llava_onevision")
        processor = (AutoProcessor if whole else AutoImageProcessor).from_pretrained(processor_dir)
        vocab = int(llm.get("pretrained_config", llm).get("vocab_size", 0))
        return cls(family, processor, vocab, features, max_images, add_special_tokens)

    def prepare(self, prompt: str, images: list[Any], encode: Encode) -> tuple[list[int], dict[str, np.ndarray]]:
        """The prompt's input ids with the images in place, and the tensors for the vision encoder."""
        if len(images) > self.max_images:
            raise ValueError(f"{len(images)} images in one request; this model takes at most {self.max_images}")
        pieces = prompt.split(self.placeholder)
        if len(pieces) - 1 != len(images):
            raise ValueError(
                f"the prompt has {len(pieces) - 1} '{self.placeholder}' placeholders for {len(images)} images"
            )
        if self.family == "mllama":
            return self._cross_attention(prompt, images)
        if self.family == "llava_onevision":
            pixels, counts, extra = self._any_resolution(images)
        else:
            pixels = self.processor(images=images, return_tensors="np")["pixel_values"]
            counts, extra = [self.features_per_image] * len(images), {}
        ids = encode(pieces[0], True)
        next_row = self.vocab_size
        for piece, count in zip(pieces[1:], counts, strict=True):
            ids += range(next_row, next_row + count)
            next_row += count
            ids += encode(piece, False)
        return ids, {"PIXEL_VALUES": pixels[np.newaxis].astype(np.float16)} | extra

    def _any_resolution(self, images: list[Any]) -> tuple[np.ndarray, list[int], dict[str, np.ndarray]]:
        """LLaVA-OneVision: patches of one image, its size, and its feature count from the processor."""
        if len(images) != 1:
            raise ValueError("llava_onevision takes one image per request")
        processed = self.processor(images=images, text="<image>", return_tensors="np")
        count = int(np.asarray(processed["input_ids"]).shape[1])
        sizes = np.asarray(processed["image_sizes"], np.int64).reshape(1, 2)
        return np.asarray(processed["pixel_values"])[0], [count], {"IMAGE_SIZES": sizes}

    def _cross_attention(self, prompt: str, images: list[Any]) -> tuple[list[int], dict[str, np.ndarray]]:
        """mllama: the processor's ids (with `<|image|>` tokens) and the encoder's four tensors."""
        processed = self.processor(
            images=[images], text=[prompt], add_special_tokens=self.add_special_tokens, return_tensors="np"
        )
        pixels = np.asarray(processed["pixel_values"])
        tensors = {
            "PIXEL_VALUES": pixels.reshape(1, -1, *pixels.shape[-3:]).astype(np.float16),
            "ASPECT_RATIO_IDS": np.asarray(processed["aspect_ratio_ids"], np.int64),
            "ASPECT_RATIO_MASK": np.asarray(processed["aspect_ratio_mask"], np.int64),
            "CROSS_ATTENTION_MASK": np.asarray(processed["cross_attention_mask"], np.int64),
        }
        return [int(i) for i in np.asarray(processed["input_ids"])[0]], tensors
