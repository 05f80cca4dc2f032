"""The dev stand-in encoder's embedding: rows made from an image's pixels, that the dev engine reads back.

Row r of an image: its mean colour in columns 0-2 (pixel values in [0, 1]), 1.0 in column 3 on the image's
first row, the mean colour of its r-th horizontal band in columns 4-6, zeros after (dev_engine_images reads it).
"""

from __future__ import annotations

import numpy as np


def embed(images: np.ndarray, features: int, hidden: int) -> np.ndarray:
    """[images, C, H, W] pixel values in [0, 1] -> [images x features, hidden] rows (see the module docstring)."""
    rows = np.zeros((images.shape[0] * features, hidden), np.float32)
    for index, image in enumerate(images.astype(np.float32)):
        first = index * features
        rows[first : first + features, 0:3] = image.mean(axis=(1, 2))[:3]
        rows[first, 3] = 1.0
        for band, pixels in enumerate(np.array_split(image, features, axis=1)):
            rows[first + band, 4:7] = pixels.mean(axis=(1, 2))[:3]
    return rows
