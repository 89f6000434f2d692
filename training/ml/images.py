"""Turning training images into square RGB tensors the VAE can encode."""

from __future__ import annotations

import random
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image, ImageOps

from training.ml.config import InvalidTrainingInput, TrainSample

if TYPE_CHECKING:
    import torch


# UnidentifiedImageError is an OSError; DecompressionBombError (a pixel count
# over Pillow's limit) is neither.
_UNREADABLE: tuple[type[Exception], ...] = (
    OSError,
    ValueError,
    Image.DecompressionBombError,
)


def check_readable(samples: list[TrainSample]) -> None:
    """Fail fast, before loading any model, on missing or undecodable images.

    Reads headers only; a file that is truncated further in fails later, at
    encoding time, with the same kind of error.
    """
    if not samples:
        raise InvalidTrainingInput("No training samples: the dataset has no images.")
    for sample in samples:
        try:
            with Image.open(sample.image_path) as image:
                image.size  # noqa: B018 - parsing the header is the check
        except _UNREADABLE as exc:
            raise InvalidTrainingInput(
                f"Cannot read training image {sample.image_path}: {exc}"
            ) from exc


def load_rgb(path: str | Path, min_side: int = 0) -> Image.Image:
    """The image upright (EXIF orientation applied), in RGB, transparency over white.

    With `min_side`, a JPEG is decoded at the smallest DCT scale that keeps
    both sides at least that long: 2-3x faster for photos much larger than
    the training resolution.
    """
    try:
        with Image.open(path) as opened:
            if min_side:
                opened.draft("RGB", (min_side, min_side))
            image = ImageOps.exif_transpose(opened)
            image.load()
    except _UNREADABLE as exc:
        raise InvalidTrainingInput(f"Cannot read training image {path}: {exc}") from exc
    if image.mode in ("RGBA", "LA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return image.convert("RGB")


def square_crop(
    image: Image.Image, size: int, *, center: bool, rng: random.Random
) -> Image.Image:
    """Resize the short side to `size`, then crop a square (centred or random)."""
    width, height = image.size
    scale = size / min(width, height)
    resized = (max(size, round(width * scale)), max(size, round(height * scale)))
    if resized != image.size:
        image = image.resize(resized, Image.Resampling.LANCZOS)
    spare_x, spare_y = image.width - size, image.height - size
    if center:
        left, top = spare_x // 2, spare_y // 2
    else:
        left, top = rng.randint(0, spare_x), rng.randint(0, spare_y)
    return image.crop((left, top, left + size, top + size))


def to_tensor(image: Image.Image) -> torch.Tensor:
    """HWC uint8 -> CHW float in [-1, 1], the VAE's input range."""
    import numpy as np
    import torch

    array = np.asarray(image, dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()
