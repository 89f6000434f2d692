"""Training images: orientation, transparency, large JPEGs, square crops."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from PIL import Image

from training.ml.config import InvalidTrainingInput
from training.ml.images import load_rgb, square_crop, to_tensor, upright_size


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    path = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    Image.new("RGB", (40, 20), "red").save(path, exif=exif)
    assert load_rgb(path).size == (20, 40)


def test_the_upright_size_comes_from_the_header_and_the_orientation(
    tmp_path: Path,
) -> None:
    """Buckets are chosen before decoding: a portrait photo stored sideways
    (EXIF "rotate 90°") must still count as a portrait."""
    rotated, plain = tmp_path / "rotated.jpg", tmp_path / "plain.png"
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.new("RGB", (300, 200), "red").save(rotated, exif=exif)
    Image.new("RGB", (300, 200), "red").save(plain)
    assert upright_size(rotated) == (200, 300) == load_rgb(rotated).size
    assert upright_size(plain) == (300, 200)
    (tmp_path / "junk.png").write_bytes(b"not an image")
    with pytest.raises(InvalidTrainingInput, match="Cannot read training image"):
        upright_size(tmp_path / "junk.png")


def test_transparency_is_composited_over_white(tmp_path: Path) -> None:
    path = tmp_path / "clear.png"
    Image.new("RGBA", (8, 8), (0, 0, 0, 0)).save(path)
    image = load_rgb(path)
    assert image.mode == "RGB"
    assert image.getpixel((0, 0)) == (255, 255, 255)


def test_large_jpegs_are_decoded_small_but_never_below_the_resolution(
    tmp_path: Path,
) -> None:
    path = tmp_path / "big.jpg"
    Image.new("RGB", (2000, 1200), "blue").save(path)
    assert load_rgb(path, 256).size == (500, 300)
    assert load_rgb(path).size == (2000, 1200)


def test_square_crops_take_the_middle_or_a_random_window() -> None:
    image = Image.new("RGB", (200, 100))
    image.paste((255, 0, 0), (0, 0, 50, 100))  # red left quarter
    centred = square_crop(image, 64, center=True, rng=random.Random(0))
    assert centred.size == (64, 64)
    assert centred.getpixel((0, 32)) != (255, 0, 0)
    lefts = {
        square_crop(image, 64, center=False, rng=random.Random(seed)).getpixel((0, 32))
        for seed in range(20)
    }
    assert (255, 0, 0) in lefts  # some random windows start in the red part
    small = square_crop(
        Image.new("RGB", (30, 20)), 64, center=True, rng=random.Random()
    )
    assert small.size == (64, 64)


def test_pixels_become_a_chw_tensor_in_minus_one_to_one() -> None:
    tensor = to_tensor(Image.new("RGB", (4, 2), (255, 0, 128)))
    assert tuple(tensor.shape) == (3, 2, 4)
    assert tensor[0].min().item() == 1.0
    assert tensor[1].max().item() == -1.0


def test_a_truncated_file_is_invalid_input(tmp_path: Path) -> None:
    path = tmp_path / "cut.jpg"
    Image.new("RGB", (64, 64), "green").save(path)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(InvalidTrainingInput, match="Cannot read training image"):
        load_rgb(path)
