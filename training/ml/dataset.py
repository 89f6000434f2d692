"""Training data on the device: VAE latents cached per bucket, batches drawn from them.

`LatentCache.encode` reads every image once, fits it to its aspect bucket (or
to today's square crop when bucketing is off), and keeps its latents (and
those of its mirror image for `random_flip`) stacked per bucket size.
`BatchSampler` then draws batches that each hold one bucket, so the UNet sees
one latent size per call, and renders each caption anew per draw (shuffled
tags, dropout). Its whole state is a queue of index lists plus a generator
state, so a resumed run continues the same sequence.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from training.ml.buckets import (
    Bucket,
    aspect_error,
    covering_size,
    fit_to_bucket,
    make_buckets,
    nearest_bucket,
)
from training.ml.captions import render_caption
from training.ml.config import InvalidTrainingInput, TrainConfig, TrainSample
from training.ml.family import SizeCond
from training.ml.images import load_rgb, to_tensor, upright_size

if TYPE_CHECKING:
    import torch

ENCODE_BATCH = 8  # images of one bucket per VAE call while caching latents


@dataclass(frozen=True)
class CachedImage:
    """One training image in the cache: where its latents are and how it was cut."""

    caption: str  # as written; rendered per draw
    repeats: int
    weight: float  # loss weight: 1.0, or the regularisation weight
    bucket: Bucket  # (width, height)
    row: int  # its row in the bucket's latents
    size: SizeCond
    flipped_size: SizeCond  # the mirror image's crop starts from the other side
    aspect_error: float  # bucket aspect minus image aspect


@dataclass
class Batch:
    latents: torch.Tensor  # (b, 4, h/8, w/8) on the device, all one bucket
    captions: list[str]  # rendered for this draw (trigger first, shuffled, dropped)
    sizes: list[SizeCond]
    weights: torch.Tensor  # (b,) per-image loss weights, on the device


class LatentCache:
    """Every image's latents, stacked per bucket: `latents[bucket]` is (n, 4, h, w)."""

    def __init__(
        self,
        images: list[CachedImage],
        latents: dict[Bucket, torch.Tensor],
        flipped: dict[Bucket, torch.Tensor] | None,
        trigger: str,
    ) -> None:
        self.images = images
        self.latents = latents
        self.flipped = flipped  # None when random_flip is off
        self.trigger = trigger

    def __len__(self) -> int:
        return len(self.images)

    @classmethod
    def encode(
        cls,
        vae: Any,
        samples: Sequence[TrainSample],
        config: TrainConfig,
        device: str,
        stage: Callable[[str], None],
        *,
        generator: torch.Generator,
        weight: float = 1.0,
    ) -> LatentCache:
        """Encode `samples` with `vae` on `device`, one VAE call per up to
        ENCODE_BATCH images of one bucket.

        Random crops (center_crop off) are drawn once per image from
        `config.seed`, as the latents are cached; `generator` draws the
        latent samples of the VAE's distribution.
        """
        import torch

        vae = vae.to(device)
        sizes = [upright_size(s.image_path) for s in samples]
        buckets = [_bucket_of(w, h, config) for w, h in sizes]
        crop_rng = random.Random(config.seed)
        images: dict[int, CachedImage] = {}
        latents: dict[Bucket, list[torch.Tensor]] = {}
        flipped: dict[Bucket, list[torch.Tensor]] = {}
        with torch.no_grad():
            for bucket, chunk in _chunks_by_bucket(buckets):
                stage(f"Encoding latents ({len(images)} of {len(samples)} images)")
                row = sum(len(part) for part in latents.get(bucket, []))
                pixels = []
                for i in chunk:
                    image, size, mirrored = _fit(
                        samples[i], sizes[i], bucket, config, crop_rng
                    )
                    pixels.append(to_tensor(image))
                    images[i] = CachedImage(
                        caption=samples[i].caption,
                        repeats=samples[i].repeats,
                        weight=weight,
                        bucket=bucket,
                        row=row + len(pixels) - 1,
                        size=size,
                        flipped_size=mirrored,
                        aspect_error=aspect_error(*sizes[i], bucket),
                    )
                batch = torch.stack(pixels).to(device)
                latents.setdefault(bucket, []).append(vae_encode(vae, batch, generator))
                if config.random_flip:
                    mirror = vae_encode(vae, batch.flip(-1), generator)
                    flipped.setdefault(bucket, []).append(mirror)
        stage(f"Encoding latents ({len(images)} of {len(samples)} images)")
        return cls(
            images=[images[i] for i in range(len(samples))],
            latents=_stacked(latents),
            flipped=_stacked(flipped) if config.random_flip else None,
            trigger=config.trigger_word,
        )

    def merged(self, other: LatentCache) -> LatentCache:
        """This cache and `other` (regularisation images) as one; rows of
        `other` follow this cache's rows in shared buckets."""
        if (self.flipped is None) != (other.flipped is None):
            raise ValueError("Cannot merge caches encoded with and without flips.")
        images = list(self.images)
        for image in other.images:
            offset = (
                self.latents[image.bucket].shape[0]
                if image.bucket in self.latents
                else 0
            )
            images.append(replace(image, row=image.row + offset))
        return LatentCache(
            images=images,
            latents=_concatenated(self.latents, other.latents),
            flipped=None
            if self.flipped is None or other.flipped is None
            else _concatenated(self.flipped, other.flipped),
            trigger=self.trigger,
        )

    def by_bucket(self) -> dict[Bucket, list[int]]:
        """Image indices per bucket, buckets sorted, images in row order."""
        members: dict[Bucket, list[int]] = {}
        for index, image in enumerate(self.images):
            members.setdefault(image.bucket, []).append(index)
        return {
            bucket: sorted(members[bucket], key=lambda i: self.images[i].row)
            for bucket in sorted(members)
        }

    def batch(
        self,
        indices: Sequence[int],
        flips: Sequence[bool],
        captions: list[str],
        device: str,
    ) -> Batch:
        """The batch of images `indices` (all of one bucket), mirrored where `flips`."""
        import torch

        rows = []
        for index, flip in zip(indices, flips, strict=True):
            image = self.images[index]
            source = self.flipped if flip and self.flipped is not None else self.latents
            rows.append(source[image.bucket][image.row])
        images = [self.images[i] for i in indices]
        return Batch(
            latents=torch.stack(rows).to(device),
            captions=captions,
            sizes=[
                im.flipped_size if flip else im.size
                for im, flip in zip(images, flips, strict=True)
            ],
            weights=torch.tensor([im.weight for im in images], device=device),
        )


def _bucket_of(width: int, height: int, config: TrainConfig) -> Bucket:
    if not config.bucketing:
        return (config.resolution, config.resolution)
    buckets = _buckets(
        config.resolution,
        config.bucket_min_side,
        config.bucket_max_side,
        config.bucket_step,
    )
    return nearest_bucket(width, height, buckets)


@functools.lru_cache(maxsize=8)
def _buckets(resolution: int, min_side: int, max_side: int, step: int) -> list[Bucket]:
    """The bucket list, made once per setting (thousands of buckets at step 8)."""
    return make_buckets(resolution, min_side, max_side, step)


def _fit(
    sample: TrainSample,
    original: tuple[int, int],
    bucket: Bucket,
    config: TrainConfig,
    crop_rng: random.Random,
) -> tuple[Any, SizeCond, SizeCond]:
    """The image cut to `bucket`, and its size conditioning as is and mirrored.

    Bucketing off, the bucket is the resolution square: the same resize and
    crop as `images.square_crop`.
    """
    image = load_rgb(sample.image_path, max(bucket))
    resized_width = covering_size(image.width, image.height, bucket)[0]
    image, (top, left) = fit_to_bucket(
        image, bucket, center=config.center_crop, rng=crop_rng
    )
    width, height = original
    target = (bucket[1], bucket[0])
    size = SizeCond((height, width), (top, left), target)
    # Mirrored, the window starts as far from the left as it ended from the right.
    mirrored_left = resized_width - left - bucket[0]
    mirrored = SizeCond((height, width), (top, mirrored_left), target)
    return image, size, mirrored


def _chunks_by_bucket(buckets: list[Bucket]) -> Iterator[tuple[Bucket, list[int]]]:
    """(bucket, up to ENCODE_BATCH image indices of it), buckets in sorted order."""
    for bucket in sorted(set(buckets)):
        members = [i for i, b in enumerate(buckets) if b == bucket]
        for first in range(0, len(members), ENCODE_BATCH):
            yield bucket, members[first : first + ENCODE_BATCH]


def _stacked(parts: dict[Bucket, list[torch.Tensor]]) -> dict[Bucket, torch.Tensor]:
    import torch

    return {bucket: torch.cat(chunks) for bucket, chunks in parts.items()}


def _concatenated(
    first: dict[Bucket, torch.Tensor], second: dict[Bucket, torch.Tensor]
) -> dict[Bucket, torch.Tensor]:
    import torch

    merged = dict(first)
    for bucket, rows in second.items():
        merged[bucket] = torch.cat([merged[bucket], rows]) if bucket in merged else rows
    return merged


def vae_encode(
    vae: Any, pixels: torch.Tensor, generator: torch.Generator
) -> torch.Tensor:
    """Latents of `pixels` ([-1, 1], NCHW) as the UNet expects them, in float32.

    A sample of the VAE's distribution drawn with `generator` (a CPU
    generator gives the same latents on every device), shifted and scaled by
    the VAE's config (SD: scaling_factor 0.18215; SDXL: 0.13025).
    """
    import torch

    latents = vae.encode(pixels.to(vae.dtype)).latent_dist.sample(generator=generator)
    shift = getattr(vae.config, "shift_factor", None) or 0.0
    latents = ((latents - shift) * vae.config.scaling_factor).float()
    if not torch.isfinite(latents).all():
        # SDXL's VAE overflows in float16.
        raise InvalidTrainingInput(
            f"The VAE gave non-finite latents in {vae.dtype}: encode in float32."
        )
    return latents


class BatchSampler:
    """Draws batches of `batch_size` from one bucket at a time; each epoch visits
    every image `repeats` times; checkpointable.

    An epoch: per bucket, every image `repeats` times in a shuffled order, cut
    into batches; a bucket's last, partial batch is kept as a smaller batch
    (as sd-scripts does) rather than dropped (its images would be lost for the
    epoch) or filled from another bucket (latent sizes differ). Then the
    batches of all buckets are shuffled together. Flips (per image, per draw)
    and each batch's caption randomness come from `generator` too, so
    `state_dict` (the queue, the epoch and the generator's state) is all a
    resumed run needs to draw the identical sequence.

    When the trainer shares `generator` with other draws (noise, timesteps)
    and checkpoints it itself, restoring it here as well is harmless: both
    states were saved at the same moment.
    """

    def __init__(
        self,
        cache: LatentCache,
        config: TrainConfig,
        generator: torch.Generator,
        device: str,
    ) -> None:
        self.cache = cache
        self.generator = generator
        self.device = device
        self.batch_size = config.batch_size
        self.flip = config.random_flip and cache.flipped is not None
        self.shuffle_tags = config.shuffle_tags
        self.keep_tokens = config.keep_tokens
        self.caption_dropout = config.caption_dropout
        self.queue: list[list[int]] = []  # the epoch's batches still to draw
        self.epoch = 0  # epochs started

    @property
    def images_per_epoch(self) -> int:
        return sum(image.repeats for image in self.cache.images)

    @property
    def batches_per_epoch(self) -> int:
        return sum(
            -(-sum(self.cache.images[i].repeats for i in members) // self.batch_size)
            for members in self.cache.by_bucket().values()
        )

    def next_batch(self) -> Batch:
        if not self.queue:
            self.queue = self._plan_epoch()
            self.epoch += 1
        indices = self.queue.pop(0)
        flips = self._draw_flips(len(indices))
        rng = random.Random(self._draw_int())
        captions = [
            render_caption(
                self.cache.images[i].caption,
                trigger=self.cache.trigger,
                shuffle_tags=self.shuffle_tags,
                keep_tokens=self.keep_tokens,
                dropout=self.caption_dropout,
                rng=rng,
            )
            for i in indices
        ]
        return self.cache.batch(indices, flips, captions, self.device)

    def _plan_epoch(self) -> list[list[int]]:
        batches = []
        for members in self.cache.by_bucket().values():
            visits = [i for i in members for _ in range(self.cache.images[i].repeats)]
            order = self._permutation(len(visits))
            shuffled = [visits[k] for k in order]
            batches += [
                shuffled[first : first + self.batch_size]
                for first in range(0, len(shuffled), self.batch_size)
            ]
        return [batches[k] for k in self._permutation(len(batches))]

    def _permutation(self, count: int) -> list[int]:
        import torch

        generator = self.generator
        return torch.randperm(
            count, generator=generator, device=generator.device
        ).tolist()

    def _draw_flips(self, count: int) -> list[bool]:
        import torch

        if not self.flip:
            return [False] * count
        generator = self.generator
        draws = torch.rand(count, generator=generator, device=generator.device)
        return (draws < 0.5).tolist()

    def _draw_int(self) -> int:
        import torch

        generator = self.generator
        return int(
            torch.randint(2**62, (1,), generator=generator, device=generator.device)
        )

    def state_dict(self) -> dict[str, Any]:
        """Plain lists, ints and a uint8 tensor: loadable with weights_only=True."""
        return {
            "queue": [list(batch) for batch in self.queue],
            "epoch": self.epoch,
            "generator": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.queue = [list(batch) for batch in state["queue"]]
        self.epoch = int(state["epoch"])
        self.generator.set_state(state["generator"])

    def fingerprint(self) -> dict[str, Any]:
        """The bucket layout a resumed run's queue refers to: it must match."""
        return {
            "buckets": [
                [bucket[0], bucket[1], len(members)]
                for bucket, members in self.cache.by_bucket().items()
            ],
            "images_per_epoch": self.images_per_epoch,
            "batch_size": self.batch_size,
        }

    def bucket_info(self) -> dict[str, Any]:
        """sd-scripts' `ss_bucket_info`: each bucket's size and image count
        (repeats included), and the mean |aspect error|."""
        buckets = {}
        for number, (bucket, members) in enumerate(self.cache.by_bucket().items()):
            count = sum(self.cache.images[i].repeats for i in members)
            buckets[str(number)] = {"resolution": list(bucket), "count": count}
        errors = [abs(image.aspect_error) for image in self.cache.images]
        return {
            "buckets": buckets,
            "mean_img_ar_error": sum(errors) / len(errors) if errors else 0.0,
        }


def validation_batches(cache: LatentCache, batch_size: int) -> Iterator[Batch]:
    """Every image once, bucket by bucket in a fixed order: no flip, no
    shuffled tags, no dropout (trigger word first), so each checkpoint's
    validation loss is measured on the same inputs."""
    plain = random.Random(0)  # never drawn from: nothing random is asked for
    for bucket_members in cache.by_bucket().values():
        for first in range(0, len(bucket_members), batch_size):
            indices = bucket_members[first : first + batch_size]
            captions = [
                render_caption(
                    cache.images[i].caption, trigger=cache.trigger, rng=plain
                )
                for i in indices
            ]
            yield cache.batch(
                indices, [False] * len(indices), captions, _device_of(cache)
            )


def _device_of(cache: LatentCache) -> str:
    """The device the cache's latents live on."""
    return str(next(iter(cache.latents.values())).device)
