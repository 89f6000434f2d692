"""Stable Diffusion model families (SD 1.x, SD 2.x, SDXL) and their text conditioning.

The family decides the text encoders, the UNet's extra inputs (SDXL's pooled
text embedding and size/crop "time ids"), the kohya key prefixes and the
default resolution. It is read from the base model's config, never guessed
from its name.
"""

from __future__ import annotations

from dataclasses import dataclass

SD1, SD2, SDXL = "sd1", "sd2", "sdxl"
FAMILY_LABELS = {SD1: "SD 1.5", SD2: "SD 2.x", SDXL: "SDXL"}
DEFAULT_RESOLUTION = {SD1: 512, SD2: 768, SDXL: 1024}


@dataclass(frozen=True)
class SizeCond:
    """One training image's SDXL micro-conditioning, in pixels.

    SD 1.x/2.x ignore it; the data pipeline fills it for every family.
    """

    original: tuple[int, int]  # (height, width) of the source image
    crop_top_left: tuple[int, int]  # (top, left) of the crop in the resized image
    target: tuple[int, int]  # (height, width) trained at: the bucket
