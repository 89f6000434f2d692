"""Aspect-ratio buckets: the list, the nearest bucket, and the resize-and-crop."""

from __future__ import annotations

import random
from fractions import Fraction

import pytest
from PIL import Image

from training.ml.buckets import fit_to_bucket, make_buckets, nearest_bucket
from training.ml.config import InvalidTrainingInput


@pytest.mark.parametrize(("resolution", "step"), [(64, 8), (512, 64), (1024, 64)])
def test_buckets_fit_the_area_in_whole_steps_one_per_aspect(
    resolution: int, step: int
) -> None:
    buckets = make_buckets(resolution, 0, 0, step)
    assert all(w * h <= resolution**2 for w, h in buckets)
    assert all(w % step == 0 and h % step == 0 for w, h in buckets)
    assert all(resolution // 2 <= side <= resolution * 2 for b in buckets for side in b)
    aspects = [Fraction(w, h) for w, h in buckets]
    assert len(set(aspects)) == len(aspects)
    assert (resolution, resolution) in buckets
    # Mirrored shapes both exist: portrait and landscape train alike.
    assert all((h, w) in buckets for w, h in buckets)


def test_every_sd_scripts_bucket_is_a_bucket_here() -> None:
    """sd-scripts' list (the tallest height per width) is a subset of ours."""
    buckets = make_buckets(512, 256, 1024, 64)
    for width in range(256, 1024 + 1, 64):
        height = min(1024, 512 * 512 // width // 64 * 64)
        if height >= 256:
            assert (width, height) in buckets
    assert (384, 576) in buckets  # 2:3, which sd-scripts lacks at 512
    # 3:4 would hold only 75% of 512² pixels: a 3:4 image crops 3.5% at 7:9.
    assert (384, 512) not in buckets
    assert nearest_bucket(300, 400, buckets) == (448, 576)


def test_min_and_max_side_bound_the_buckets() -> None:
    buckets = make_buckets(512, 384, 640, 64)
    assert min(min(b) for b in buckets) == 384
    assert max(max(b) for b in buckets) == 640
    with pytest.raises(InvalidTrainingInput, match="No bucket fits"):
        make_buckets(64, 96, 128, 8)


def test_nearest_bucket_goes_by_aspect_ratio() -> None:
    buckets = make_buckets(64, 0, 0, 8)
    assert nearest_bucket(200, 300, buckets) == (48, 72)
    assert nearest_bucket(300, 200, buckets) == (72, 48)
    assert nearest_bucket(777, 777, buckets) == (64, 64)
    assert nearest_bucket(10, 1000, buckets) == (32, 128)  # the tallest there is


def _quadrants(width: int, height: int) -> Image.Image:
    """Red top-left, green top-right, blue bottom-left, white bottom-right."""
    image = Image.new("RGB", (width, height), "white")
    image.paste((255, 0, 0), (0, 0, width // 2, height // 2))
    image.paste((0, 255, 0), (width // 2, 0, width, height // 2))
    image.paste((0, 0, 255), (0, height // 2, width // 2, height))
    return image


def test_a_2_by_3_image_lands_in_a_2_by_3_bucket_uncropped() -> None:
    image = _quadrants(200, 300)
    bucket = nearest_bucket(*image.size, make_buckets(64, 0, 0, 8))
    assert Fraction(*bucket) == Fraction(2, 3)
    fitted, (top, left) = fit_to_bucket(
        image, bucket, center=False, rng=random.Random(1)
    )
    assert fitted.size == bucket
    assert (top, left) == (0, 0)  # nothing to crop
    # All four corners survive: the whole picture is there, only smaller.
    corners = [(1, 1), (46, 1), (1, 70), (46, 70)]
    got = [fitted.getpixel(xy) for xy in corners]
    assert got == [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)]


def test_a_square_image_at_the_resolution_is_untouched() -> None:
    image = _quadrants(64, 64)
    bucket = nearest_bucket(64, 64, make_buckets(64, 0, 0, 8))
    fitted, corner = fit_to_bucket(image, bucket, center=True, rng=random.Random())
    assert (bucket, corner) == ((64, 64), (0, 0))
    assert fitted.tobytes() == image.tobytes()


def test_only_the_rounding_remainder_is_cropped() -> None:
    """A 5:7 image has no exact bucket at 64 px: it is resized to cover the
    nearest one and loses only the sliver that sticks out, centred or not."""
    image = _quadrants(500, 700)
    bucket = nearest_bucket(500, 700, make_buckets(64, 0, 0, 8))
    assert bucket == (48, 72)  # 2:3, nearest in log ratio to 5:7
    fitted, corner = fit_to_bucket(image, bucket, center=True, rng=random.Random())
    # Resized to 51x72: 3 columns spare, 1 cut at the left and 2 at the right.
    assert fitted.size == (48, 72)
    assert corner == (0, 1)
    corners = {
        fit_to_bucket(image, bucket, center=False, rng=random.Random(seed))[1]
        for seed in range(30)
    }
    assert corners == {(0, 0), (0, 1), (0, 2), (0, 3)}
