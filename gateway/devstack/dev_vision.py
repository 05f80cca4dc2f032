"""The dev stack's vision model: the files a vision deployment has, for the trtllm-dev language model, and no weights.

A vision model on Triton needs three things besides the language model (docs/multimodal.md): the vision engine's
folder (its `config.json` names the family; the dev one also tells the stand-in encoder its table shape), the
language engine's `config.json` (vocabulary size and prompt-table size: preprocessing derives the prompt-table
rows per image from it, by NVIDIA's formula) and the Hugging Face image processor (`preprocessor_config.json`).
The dev family is `llava`: a CLIP image processor that shrinks every image to 16 x 16 pixel values in [0, 1],
FEATURES_PER_IMAGE rows per image. The stand-in `multimodal_encoders` (triton_repo/dev/multimodal) makes the rows
from the pixels, and the dev engine reads their colours back, so what the model says depends on the image.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from gateway.devstack.dev_model import PARAMS, ensure_built

FAMILY = "llava"
FEATURES_PER_IMAGE = 4
IMAGE_SIDE = 16
MAX_BATCH_SIZE = 64
RECIPE_VERSION = 1


def _files(max_images: int, vocab_size: int) -> dict[str, dict[str, object]]:
    """relative path -> JSON contents."""
    return {
        "config.json": {
            "builder_config": {"model_type": FAMILY, "precision": "float16"},
            "dev_encoder": {"features_per_image": FEATURES_PER_IMAGE, "hidden_size": PARAMS.hidden_size},
        },
        "engine/config.json": {
            "pretrained_config": {"vocab_size": vocab_size, "hidden_size": PARAMS.hidden_size},
            "build_config": {
                "max_batch_size": MAX_BATCH_SIZE,
                "max_prompt_embedding_table_size": MAX_BATCH_SIZE * FEATURES_PER_IMAGE * max_images,
            },
        },
        "preprocessor_config.json": {
            "image_processor_type": "CLIPImageProcessor",
            "do_resize": True,
            "size": {"shortest_edge": IMAGE_SIDE},
            "resample": 3,
            "do_center_crop": True,
            "crop_size": {"height": IMAGE_SIDE, "width": IMAGE_SIDE},
            "do_rescale": True,
            "rescale_factor": 1 / 255,
            "do_normalize": False,
            "image_mean": [0.0, 0.0, 0.0],
            "image_std": [1.0, 1.0, 1.0],
            "do_convert_rgb": True,
        },
    }


def ensure_dev_vision(cache_root: Path, max_images: int, vocab_size: int = PARAMS.vocab_size) -> Path:
    """The dev vision folder for `max_images` images per request: its config.json (the vision engine's),
    engine/config.json (the language engine's) and preprocessor_config.json; built once into the cache."""
    files = _files(max_images, vocab_size)
    fingerprint = hashlib.sha256(json.dumps([RECIPE_VERSION, files], sort_keys=True).encode()).hexdigest()

    def build(folder: Path) -> None:
        for name, contents in files.items():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_text(json.dumps(contents, indent=2))

    return ensure_built(cache_root, "dev-vision", fingerprint, build)
