"""The latent cache and batch sampler on the tiny model's real VAE."""

from __future__ import annotations

import io
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from training.ml.config import TrainSample
from training.ml.family import SizeCond
from training.tests.conftest import make_train_config

# name: (width, height). Buckets at 64 px, step 8: 2:3 -> 48x72, 3:2 -> 72x48.
# The tiny VAE halves the size (a real one divides it by 8).
SHAPES = {
    "tall-a": (200, 300),
    "tall-b": (120, 180),
    "wide": (300, 200),
    "square-a": (64, 64),
    "square-b": (80, 80),
    "square-c": (90, 90),
}


@pytest.fixture(scope="module")
def vae(tiny_base: Path) -> Any:
    from training.ml.base import load_pipeline

    return load_pipeline(str(tiny_base)).vae


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> list[TrainSample]:
    folder = tmp_path_factory.mktemp("dataset-images")
    found = []
    for number, (name, size) in enumerate(SHAPES.items()):
        image = Image.new("RGB", size, (40 * number, 255 - 40 * number, 90))
        image.paste((255, 255, 255), (0, 0, size[0] // 3, size[1] // 3))
        path = folder / f"{name}.png"
        image.save(path)
        found.append(TrainSample(str(path), f"{name}, tag a, tag b, tag c"))
    return found


def _config(tmp_path: Path, **overrides: Any) -> Any:
    return make_train_config(tmp_path, tmp_path, **{"bucket_step": 8, **overrides})


def _encode(vae: Any, samples: list[TrainSample], config: Any, **kw: Any) -> Any:
    import torch

    from training.ml.dataset import LatentCache

    return LatentCache.encode(
        vae,
        samples,
        config,
        "cpu",
        kw.pop("stage", lambda _: None),
        generator=torch.Generator().manual_seed(0),
        **kw,
    )


@pytest.fixture(scope="module")
def cache(vae: Any, samples: list[TrainSample], tmp_path_factory: Any) -> Any:
    config = _config(tmp_path_factory.mktemp("cfg"), random_flip=True)
    return _encode(vae, samples, config)


def test_latents_are_cached_per_bucket_at_the_image_aspect(
    vae: Any, samples: list[TrainSample], tmp_path: Path
) -> None:
    messages: list[str] = []
    config = _config(tmp_path, random_flip=True)
    cache = _encode(vae, samples, config, stage=messages.append)
    shapes = {bucket: tuple(t.shape) for bucket, t in cache.latents.items()}
    assert shapes == {
        (48, 72): (2, 4, 36, 24),
        (64, 64): (3, 4, 32, 32),
        (72, 48): (1, 4, 24, 36),
    }
    assert {b: tuple(t.shape) for b, t in cache.flipped.items()} == shapes
    assert messages[-1] == "Encoding latents (6 of 6 images)"
    tall = cache.images[0]
    assert tall.bucket == (48, 72)
    # SDXL's micro-conditioning: source (h, w), nothing cropped, target (h, w).
    assert tall.size == SizeCond((300, 200), (0, 0), (72, 48))


def test_bucketing_off_crops_squares_as_before(
    vae: Any, samples: list[TrainSample], tmp_path: Path
) -> None:
    config = _config(tmp_path, bucketing=False, random_flip=False)
    cache = _encode(vae, samples, config)
    assert list(cache.latents) == [(64, 64)]
    assert cache.latents[(64, 64)].shape == (6, 4, 32, 32)
    assert cache.flipped is None
    # The 200x300 image is resized to 64x96 and its middle 64 rows kept.
    assert cache.images[0].size == SizeCond((300, 200), (16, 0), (64, 64))
    wide = cache.images[2]  # 300x200 -> 96x64, centred: 16 columns cut at the left
    assert wide.size.crop_top_left == (0, 16)
    assert wide.flipped_size.crop_top_left == (0, 16)


def test_a_random_crop_is_mirrored_for_the_flipped_latents(
    vae: Any, samples: list[TrainSample], tmp_path: Path
) -> None:
    config = _config(tmp_path, bucketing=False, center_crop=False, seed=3)
    wide = _encode(vae, samples[2:3], config).images[0]
    top, left = wide.size.crop_top_left
    assert wide.flipped_size.crop_top_left == (top, 96 - 64 - left)


def test_every_batch_holds_one_bucket_and_each_image_its_repeats(
    cache: Any, tmp_path: Path
) -> None:
    import torch

    from training.ml.dataset import BatchSampler

    repeated = _with_repeats(cache, [1, 2, 3, 1, 2, 3])
    config = _config(tmp_path, batch_size=2, random_flip=False)
    sampler = BatchSampler(repeated, config, torch.Generator().manual_seed(5), "cpu")
    assert sampler.images_per_epoch == 12
    # 48x72: 1+2 visits -> 2 batches; 72x48: 3 -> 2; 64x64: 1+2+3 -> 3.
    assert sampler.batches_per_epoch == 7
    seen: Counter[str] = Counter()
    sizes = []
    for _ in range(sampler.batches_per_epoch):
        batch = sampler.next_batch()
        sizes.append(len(batch.captions))
        assert len({s.target for s in batch.sizes}) == 1
        height, width = batch.sizes[0].target
        assert batch.latents.shape[1:] == (4, height // 2, width // 2)
        seen.update(caption.split(",")[1].strip() for caption in batch.captions)
    assert sorted(sizes) == [1, 1, 2, 2, 2, 2, 2]  # partial batches kept, smaller
    assert seen == {name: 1 + i % 3 for i, name in enumerate(SHAPES)}
    assert sampler.epoch == 1


def _with_repeats(cache: Any, repeats: list[int]) -> Any:
    from training.ml.dataset import LatentCache

    images = [
        replace(im, repeats=n) for im, n in zip(cache.images, repeats, strict=True)
    ]
    return LatentCache(images, cache.latents, cache.flipped, cache.trigger)


def _drawn(batch: Any) -> tuple[Any, ...]:
    return (batch.latents.tolist(), batch.captions, batch.sizes)


def test_a_restored_sampler_draws_the_identical_sequence(
    cache: Any, tmp_path: Path
) -> None:
    import torch

    from training.ml.dataset import BatchSampler

    config = _config(
        tmp_path, batch_size=2, shuffle_tags=True, caption_dropout=0.3, random_flip=True
    )
    first = BatchSampler(cache, config, torch.Generator().manual_seed(9), "cpu")
    for _ in range(5):  # into the second epoch's queue
        first.next_batch()
    saved = io.BytesIO()
    torch.save(first.state_dict(), saved)
    expected = [_drawn(first.next_batch()) for _ in range(8)]

    resumed = BatchSampler(cache, config, torch.Generator().manual_seed(123), "cpu")
    saved.seek(0)
    resumed.load_state_dict(torch.load(saved, weights_only=True))
    assert [_drawn(resumed.next_batch()) for _ in range(8)] == expected
    assert resumed.fingerprint() == first.fingerprint()
    # And the draws are really random: flips, tag order and dropout all occur.
    captions = [c for drawn in expected for c in drawn[1]]
    assert "" in captions
    assert len({c for c in captions if c}) > 3


def test_flips_draw_the_mirrored_latents(cache: Any, tmp_path: Path) -> None:
    import torch

    from training.ml.dataset import BatchSampler

    config = _config(tmp_path, batch_size=1, random_flip=True)
    sampler = BatchSampler(cache, config, torch.Generator().manual_seed(2), "cpu")
    wide = cache.latents[(72, 48)][0]
    mirrored = cache.flipped[(72, 48)][0]
    drawn = []
    for _ in range(sampler.batches_per_epoch * 6):
        batch = sampler.next_batch()
        if batch.sizes[0].target == (48, 72):
            drawn.append(batch.latents[0])
    assert any(torch.equal(d, wide) for d in drawn)
    assert any(torch.equal(d, mirrored) for d in drawn)
    assert not torch.equal(wide, mirrored)


def test_validation_batches_are_fixed_plain_and_complete(cache: Any) -> None:
    import torch

    from training.ml.dataset import validation_batches

    first = [_drawn(b) for b in validation_batches(cache, 2)]
    assert first == [_drawn(b) for b in validation_batches(cache, 2)]
    captions = [c for drawn in first for c in drawn[1]]
    assert sorted(captions) == sorted(f"zxq, {s}, tag a, tag b, tag c" for s in SHAPES)
    batches = list(validation_batches(cache, 2))
    assert torch.equal(batches[0].latents, cache.latents[(48, 72)])  # never flipped


def test_regularisation_images_merge_with_their_weight(
    vae: Any, samples: list[TrainSample], cache: Any, tmp_path: Path
) -> None:
    import torch

    from training.ml.dataset import validation_batches

    config = _config(tmp_path, random_flip=True)
    reg = _encode(vae, samples[:1], config, weight=0.25)
    merged = cache.merged(reg)
    assert len(merged) == 7
    assert merged.latents[(48, 72)].shape[0] == 3
    last = merged.images[-1]
    assert (last.bucket, last.row, last.weight) == ((48, 72), 2, 0.25)
    batch = next(iter(validation_batches(merged, 3)))
    assert batch.weights.tolist() == [1.0, 1.0, 0.25]
    assert torch.equal(batch.latents[2], reg.latents[(48, 72)][0])


def test_bucket_info_is_sd_scripts_shaped(cache: Any, tmp_path: Path) -> None:
    import torch

    from training.ml.dataset import BatchSampler

    config = _config(tmp_path)
    sampler = BatchSampler(cache, config, torch.Generator(), "cpu")
    info = sampler.bucket_info()
    assert info["buckets"] == {
        "0": {"resolution": [48, 72], "count": 2},
        "1": {"resolution": [64, 64], "count": 3},
        "2": {"resolution": [72, 48], "count": 1},
    }
    assert info["mean_img_ar_error"] == pytest.approx(0.0)


def test_sdxl_latents_use_the_sdxl_vae_scaling(
    tiny_sdxl_base: Path, samples: list[TrainSample], tmp_path: Path
) -> None:
    """The VAE's own config scales the latents (SDXL: 0.13025, not SD's 0.18215)."""
    import torch
    from diffusers import AutoencoderKL

    from training.ml.images import load_rgb, to_tensor

    vae = AutoencoderKL.from_pretrained(tiny_sdxl_base / "vae")
    assert vae.config.scaling_factor == pytest.approx(0.13025)
    config = _config(tmp_path, random_flip=False)
    cache = _encode(vae, samples[:1], config)
    image = load_rgb(samples[0].image_path).resize((48, 72), Image.Resampling.LANCZOS)
    pixels = to_tensor(image)[None]
    with torch.no_grad():
        raw = vae.encode(pixels).latent_dist.sample(
            generator=torch.Generator().manual_seed(0)
        )
    assert torch.allclose(cache.latents[(48, 72)], raw * 0.13025, atol=1e-5)
    assert raw.abs().max() > 0.1  # a wrong factor would show
