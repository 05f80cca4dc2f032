"""The Python code of the vision models: preprocessing's placeholder expansion per family, and the dev stand-in
encoder's rows that the dev engine reads back (triton_repo/, run here without Triton)."""

from __future__ import annotations

import base64
import io
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from gateway.devstack.dev_model import ensure_dev_model
from gateway.devstack.dev_vision import FEATURES_PER_IMAGE, ensure_dev_vision
from gateway.devstack.repository import triton_repo_root

sys.path.insert(0, str(triton_repo_root() / "trtllm" / "preprocessing" / "1"))
sys.path.insert(0, str(triton_repo_root() / "dev" / "multimodal" / "multimodal_encoders" / "1"))
sys.path.insert(0, str(triton_repo_root() / "dev" / "tensorrt_llm" / "1"))
from dev_encoder_embedding import embed
from dev_engine_images import image_colours
from preprocessing_vision import VisionPreprocessor, decode_image, images_from_pixels

VOCAB = 2560


def image(color: tuple[int, int, int], size: tuple[int, int] = (40, 30)) -> Image.Image:
    return Image.new("RGB", size, color)


def data_url(picture: Image.Image) -> bytes:
    out = io.BytesIO()
    picture.save(out, "PNG")
    return b"data:image/png;base64," + base64.b64encode(out.getvalue())


def encode(text: str, starts: bool) -> list[int]:
    """A stand-in tokenizer: one id per character (BOS 1 at the start)."""
    return ([1] if starts else []) + [ord(c) for c in text]


@pytest.fixture(scope="module")
def dev_llava(tmp_path_factory: pytest.TempPathFactory) -> VisionPreprocessor:
    folder = ensure_dev_vision(tmp_path_factory.mktemp("cache"), max_images=4)
    return VisionPreprocessor.load(str(folder), str(folder / "engine"), str(folder), 4, False)


def test_data_urls_are_read_and_nothing_else(tmp_path: Path) -> None:
    assert decode_image(data_url(image((1, 2, 3)))).getpixel((0, 0)) == (1, 2, 3)
    for value in (b"https://example.com/a.png", "http://169.254.169.254/", b"data:image/png,raw"):
        with pytest.raises(ValueError, match="data:image"):
            decode_image(value)
    rows = np.zeros((2, 5, 6, 3), np.uint8)
    rows[1, ..., 2] = 255
    assert [p.getpixel((0, 0)) for p in images_from_pixels(rows)] == [(0, 0, 0), (0, 0, 255)]
    assert images_from_pixels(np.moveaxis(rows, -1, 1))[1].size == (6, 5)  # channels first


def test_each_placeholder_becomes_its_images_rows_in_order(dev_llava: VisionPreprocessor) -> None:
    assert (dev_llava.family, dev_llava.features_per_image, dev_llava.vocab_size) == (
        "llava",
        FEATURES_PER_IMAGE,
        VOCAB,
    )
    ids, tensors = dev_llava.prepare("ab<image>c<image>", [image((255, 0, 0)), image((0, 0, 255))], encode)
    assert ids == [1, 97, 98, *range(VOCAB, VOCAB + 4), 99, *range(VOCAB + 4, VOCAB + 8)]
    pixels = tensors["PIXEL_VALUES"]
    assert pixels.shape == (1, 2, 3, 16, 16) and pixels.dtype == np.float16
    assert pixels[0, 0, 0].min() == 1.0 and pixels[0, 1, 2].min() == 1.0 and pixels[0, 1, 0].max() == 0.0


@pytest.mark.parametrize(("prompt", "count"), [("no placeholder", 1), ("<image><image>", 1), ("<image>", 5)])
def test_placeholders_and_images_must_agree(dev_llava: VisionPreprocessor, prompt: str, count: int) -> None:
    with pytest.raises(ValueError):
        dev_llava.prepare(prompt, [image((0, 0, 0))] * count, encode)


def test_llava_onevision_takes_its_feature_count_from_the_processor() -> None:
    def processor(images: list[Any], text: str, return_tensors: str) -> dict[str, Any]:
        assert text == "<image>" and len(images) == 1
        return {"input_ids": np.zeros((1, 7)), "pixel_values": np.ones((1, 5, 3, 4, 4)), "image_sizes": [[30, 40]]}

    onevision = VisionPreprocessor("llava_onevision", processor, VOCAB, 0, 1)
    ids, tensors = onevision.prepare("x<image>y", [image((0, 0, 0))], encode)
    assert ids == [1, 120, *range(VOCAB, VOCAB + 7), 121]
    assert tensors["PIXEL_VALUES"].shape == (1, 5, 3, 4, 4) and tensors["IMAGE_SIZES"].tolist() == [[30, 40]]
    with pytest.raises(ValueError, match="one image"):
        VisionPreprocessor("llava_onevision", processor, VOCAB, 0, 2).prepare(
            "<image><image>", [image((0, 0, 0))] * 2, encode
        )


def test_mllama_keeps_its_image_token_and_gets_the_cross_attention_tensors() -> None:
    def processor(images: list[Any], text: list[str], add_special_tokens: bool, return_tensors: str) -> dict[str, Any]:
        assert text == ["<|image|>hi"] and not add_special_tokens and len(images[0]) == 1
        return {
            "input_ids": np.array([[128256, 6151]]),
            "pixel_values": np.zeros((1, 1, 4, 3, 8, 8)),
            "aspect_ratio_ids": np.array([[6]]),
            "aspect_ratio_mask": np.array([[[1, 1, 0, 0]]]),
            "cross_attention_mask": np.ones((1, 2, 1, 4)),
        }

    mllama = VisionPreprocessor("mllama", processor, 128256, 0, 1)
    assert mllama.placeholder == "<|image|>"
    ids, tensors = mllama.prepare("<|image|>hi", [image((0, 0, 0))], encode)
    assert ids == [128256, 6151]
    assert tensors["PIXEL_VALUES"].shape == (1, 4, 3, 8, 8)
    assert {name: t.dtype for name, t in tensors.items() if name != "PIXEL_VALUES"} == dict.fromkeys(
        ("ASPECT_RATIO_IDS", "ASPECT_RATIO_MASK", "CROSS_ATTENTION_MASK"), np.dtype(np.int64)
    )


def test_the_dev_engine_reads_back_the_colours_the_stand_in_encoder_wrote() -> None:
    pixels = np.zeros((3, 3, 16, 16), np.float32)
    pixels[0, 0] = 1.0  # red
    pixels[1, 1] = 1.0  # green
    pixels[2, 2, :8] = 1.0  # blue in the top half: a mean of half blue
    rows = embed(pixels, FEATURES_PER_IMAGE, 64).astype(np.float16)  # as the table travels
    assert rows.shape == (12, 64) and rows[FEATURES_PER_IMAGE * 2, 4:7].tolist() == [0.0, 0.0, 1.0]
    prompt = [5, *range(VOCAB, VOCAB + 8), 6, *range(VOCAB + 8, VOCAB + 12)]
    assert image_colours(prompt, VOCAB, rows) == ["#ff0000", "#00ff00", "#000080"]
    assert image_colours([5, 6], VOCAB, rows) == []


def test_the_dev_vision_files_are_built_once(tmp_path: Path) -> None:
    first = ensure_dev_vision(tmp_path, max_images=2)
    assert ensure_dev_vision(tmp_path, max_images=2) == first != ensure_dev_vision(tmp_path, max_images=3)
    assert (first / "preprocessor_config.json").is_file() and ensure_dev_model().is_dir()
