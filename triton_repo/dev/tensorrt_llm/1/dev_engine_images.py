"""What the dev engine reads back from a prompt table: which images the prompt holds, in order, and their colour.

A prompt-table id is `vocab_size + row`; the dev stand-in of `multimodal_encoders` (triton_repo/dev/multimodal)
writes each image's rows with the image's mean colour (R, G, B in [0, 1]) in columns 0-2 and 1.0 in column 3 on
the image's first row. So the colours of the images, in the order the prompt places them, come back as
`#rrggbb` strings: what a test needs to tell which images reached the engine, and in which order.
"""

from __future__ import annotations

from typing import Any

COLOUR_COLUMNS = slice(0, 3)
FIRST_ROW_COLUMN = 3


def image_colours(prompt: list[int], vocab_size: int, table: Any) -> list[str]:
    """The `#rrggbb` colour of each image whose rows the prompt points at, in prompt order."""
    colours = []
    for token in prompt:
        if token < vocab_size:
            continue
        row = table[token - vocab_size]
        if row[FIRST_ROW_COLUMN] >= 0.5:
            red, green, blue = (min(255, max(0, round(float(value) * 255))) for value in row[COLOUR_COLUMNS])
            colours.append(f"#{red:02x}{green:02x}{blue:02x}")
    return colours
