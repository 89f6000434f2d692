"""Reading training images upright in RGB and turning them into VAE inputs."""

from __future__ import annotations

import random
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image, ImageOps

from training.ml.buckets import fit_to_bucket
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
_ORIENTATION = 0x0112  # the EXIF tag


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


def upright_size(path: str | Path) -> tuple[int, int]:
    """(width, height) of the image as `load_rgb` returns it, from the header only.

    EXIF orientations 5-8 turn the picture a quarter, swapping the sides.
    """
    try:
        with Image.open(path) as opened:
            width, height = opened.size
            orientation = opened.getexif().get(_ORIENTATION, 1)
    except _UNREADABLE as exc:
        raise InvalidTrainingInput(f"Cannot read training image {path}: {exc}") from exc
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


def square_crop(
    image: Image.Image, size: int, *, center: bool, rng: random.Random
) -> Image.Image:
    """Resize the short side to `size`, then crop a square (centred or random)."""
    return fit_to_bucket(image, (size, size), center=center, rng=rng)[0]


def to_tensor(image: Image.Image) -> torch.Tensor:
    """HWC uint8 -> CHW float in [-1, 1], the VAE's input range."""
    import numpy as np
    import torch

    array = np.asarray(image, dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()
