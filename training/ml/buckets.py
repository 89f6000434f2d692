"""Aspect-ratio buckets: training sizes of about `resolution`² pixels in any shape.

An image trains at the bucket nearest its own aspect ratio, resized so it
covers the bucket; only what does not fit (the rounding of the bucket's sides
to `step`, or the gap to the nearest aspect) is cropped.

The bucket list differs from kohya sd-scripts' on purpose. sd-scripts takes,
for each width, the tallest height that fits the area, so at 512 px it has no
2:3 and no 3:4 bucket and a 2:3 photo loses a tenth of its height. Here every
aspect ratio that some pair of step-multiples can express becomes a bucket
(its largest such pair), as long as that bucket keeps at least
`MIN_AREA_FRACTION` of the largest bucket's pixels: 2:3 (photos, tarot and
trading cards) gets an exact bucket; a shape whose exact bucket would be much
smaller, like 3:4 at 512 px, crops a little into the nearest bucket instead.
Every sd-scripts bucket is also a bucket here.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable
from fractions import Fraction

from PIL import Image

from training.ml.config import InvalidTrainingInput

# A bucket smaller than this share of the largest one is dropped: the image
# would lose more detail to the smaller size than to cropping into a near
# aspect. At 512 and 1024 px (step 64) 2:3 keeps 84% and gets its exact
# bucket; 3:4 would keep 75%, so a 3:4 photo goes to 7:9 instead and loses
# 3.5% of its height. sd-scripts' own buckets all keep more than 80%.
MIN_AREA_FRACTION = 0.8

Bucket = tuple[int, int]  # (width, height) in pixels


def make_buckets(
    resolution: int, min_side: int = 0, max_side: int = 0, step: int = 64
) -> list[Bucket]:
    """Every (width, height) bucket, sorted; see the module docstring.

    Sides are multiples of `step` within [min_side, max_side] (0 means
    resolution // 2 and resolution * 2), the area is at most resolution².
    """
    min_side = min_side or resolution // 2
    max_side = max_side or resolution * 2
    low, high = max(1, math.ceil(min_side / step)), max_side // step
    area = resolution**2
    largest: dict[Fraction, Bucket] = {}
    for w in range(low, high + 1):
        for h in range(low, high + 1):
            if w * h * step * step > area:
                break
            # Ascending w: the last pair seen of an aspect is its largest.
            largest[Fraction(w, h)] = (w * step, h * step)
    if not largest:
        raise InvalidTrainingInput(
            f"No bucket fits: sides {min_side}-{max_side} px in steps of {step} "
            f"at resolution {resolution}."
        )
    biggest = max(w * h for w, h in largest.values())
    return sorted(
        b for b in largest.values() if b[0] * b[1] >= MIN_AREA_FRACTION * biggest
    )


def nearest_bucket(width: int, height: int, buckets: Iterable[Bucket]) -> Bucket:
    """The bucket whose aspect ratio is closest to the image's.

    Distance is |log(aspect ratio)| difference, so 1:2 and 2:1 are equally far
    from 1:1; a tie goes to the larger bucket.
    """
    image_log = math.log(width / height)
    return min(
        buckets,
        key=lambda b: (abs(math.log(b[0] / b[1]) - image_log), -b[0] * b[1]),
    )


def aspect_error(width: int, height: int, bucket: Bucket) -> float:
    """Bucket aspect minus image aspect (width / height), as sd-scripts reports it."""
    return bucket[0] / bucket[1] - width / height


def covering_size(width: int, height: int, bucket: Bucket) -> tuple[int, int]:
    """(width, height) the image is resized to so it just covers `bucket`."""
    scale = max(bucket[0] / width, bucket[1] / height)
    return max(bucket[0], round(width * scale)), max(bucket[1], round(height * scale))


def fit_to_bucket(
    image: Image.Image, bucket: Bucket, *, center: bool, rng: random.Random
) -> tuple[Image.Image, tuple[int, int]]:
    """The image resized to cover `bucket`, then cropped to it; and (top, left).

    The scale is the larger of the two side ratios, so one side fits exactly
    and only the other is cropped: centred, or at a random offset drawn from
    `rng` (left, then top) when `center` is False. (top, left) is the crop's
    corner in the resized image, SDXL's crop conditioning.
    """
    target_w, target_h = bucket
    resized = covering_size(image.width, image.height, bucket)
    if resized != image.size:
        image = image.resize(resized, Image.Resampling.LANCZOS)
    spare_x, spare_y = image.width - target_w, image.height - target_h
    if center:
        left, top = spare_x // 2, spare_y // 2
    else:
        left, top = rng.randint(0, spare_x), rng.randint(0, spare_y)
    cropped = image.crop((left, top, left + target_w, top + target_h))
    return cropped, (top, left)
