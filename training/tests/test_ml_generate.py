"""generate_images and LoRA stacks on the tiny real pipeline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from training.ml.config import GenerationStopped, InvalidGenerationInput
from training.ml.generate import (
    SCHEDULERS,
    GenerateSpec,
    LoraSpec,
    PipelineHolder,
    apply_loras,
    generate_images,
    loaded_adapters,
)
from training.ml.kohya import read_lora_metadata, save_kohya_lora

# diffusers' schedulers trip a numpy 2 deprecation on every timestep setup.
pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation:DeprecationWarning"
)


def pixels(image: Any) -> Any:
    import numpy as np

    return np.asarray(image, dtype=np.int16)


def spec(**overrides: Any) -> GenerateSpec:
    defaults: dict[str, Any] = {
        "prompt": "zxq a cat",
        "steps": 2,
        "seed": 7,
        "width": 64,
        "height": 64,
    }
    return GenerateSpec(**{**defaults, **overrides})


@pytest.fixture(scope="module")
def holder(tiny_base: Path) -> Any:
    holder = PipelineHolder(str(tiny_base), device="cpu")
    yield holder
    holder.close()


@pytest.fixture(scope="module")
def second_lora(trained_lora: Any, tmp_path_factory: Any) -> str:
    """Another valid LoRA: the trained one with its up weights times -2."""
    from safetensors.torch import load_file

    state = load_file(trained_lora.lora_path)
    flipped = {k: -2 * v if ".lora_up." in k else v for k, v in state.items()}
    path = tmp_path_factory.mktemp("ml-lora") / "other.safetensors"
    save_kohya_lora(flipped, path, read_lora_metadata(trained_lora.lora_path))
    return str(path)


def test_the_kohya_file_loads_into_a_fresh_pipeline_and_changes_its_output(
    tiny_base: Path, trained_lora: Any
) -> None:
    import torch
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(
        tiny_base, safety_checker=None, requires_safety_checker=False
    )
    pipe.set_progress_bar_config(disable=True)

    def render() -> Any:
        generator = torch.Generator().manual_seed(3)
        return pipe(
            "zxq a cat",
            num_inference_steps=2,
            height=64,
            width=64,
            generator=generator,
            output_type="np",
        ).images[0]

    base = render()
    pipe.load_lora_weights(trained_lora.lora_path)  # the plain file path
    with_lora = render()
    assert abs(with_lora - base).max() > 0.01
    pipe.unload_lora_weights()
    assert (render() == base).all()


def test_a_unet_only_lora_loads_without_warning_of_missing_text_encoder_keys(
    holder: Any, trained_lora: Any, caplog: Any
) -> None:
    # Training saves UNet-only LoRAs by default: diffusers' "No LoRA keys
    # associated to CLIPTextModel" on every job was noise in the worker's log.
    import logging

    from safetensors import safe_open

    with safe_open(trained_lora.lora_path, "pt") as weights:
        assert not [k for k in weights.keys() if k.startswith("lora_te")]  # noqa: SIM118
    with caplog.at_level(logging.INFO, logger="diffusers"):
        apply_loras(holder.pipe, [LoraSpec(trained_lora.lora_path, 0.8)])
    assert loaded_adapters(holder.pipe)
    assert not [r for r in caplog.records if "No LoRA keys" in r.getMessage()]
    apply_loras(holder.pipe, [])
    # Outside a load, diffusers' own warnings still reach the log.
    logging.getLogger("diffusers.loaders.lora_base").warning("No LoRA keys here")
    assert [r for r in caplog.records if r.getMessage() == "No LoRA keys here"]


def test_the_same_seed_gives_the_same_images(holder: Any, trained_lora: Any) -> None:
    lora = (LoraSpec(trained_lora.lora_path, 0.8, "style"),)
    first = generate_images(holder, spec(num_images=2, loras=lora))
    again = generate_images(holder, spec(num_images=2, loras=lora))
    assert [im.size for im in first] == [(64, 64), (64, 64)]
    assert all(
        (pixels(a) == pixels(b)).all() for a, b in zip(first, again, strict=True)
    )
    assert (pixels(first[0]) != pixels(first[1])).any()
    # Image i uses seed + i: rendering it alone gives the same picture.
    alone = generate_images(holder, spec(seed=8, loras=lora))[0]
    assert (pixels(alone) == pixels(first[1])).all()


def test_an_empty_lora_stack_renders_the_base_model(
    tiny_base: Path, trained_lora: Any
) -> None:
    fresh = PipelineHolder(str(tiny_base), device="cpu")
    base = pixels(generate_images(fresh, spec())[0])
    lora = (LoraSpec(trained_lora.lora_path, 1.0, "style"),)
    with_lora = pixels(generate_images(fresh, spec(loras=lora))[0])
    assert (with_lora != base).any()
    after = pixels(generate_images(fresh, spec())[0])
    assert (after == base).all()
    assert loaded_adapters(fresh.pipe) == set()


def test_two_loras_at_different_weights_change_the_output(
    holder: Any, trained_lora: Any, second_lora: str
) -> None:
    def render(a: float, b: float) -> Any:
        loras = (
            LoraSpec(trained_lora.lora_path, a, "first"),
            LoraSpec(second_lora, b, "second"),
        )
        return pixels(generate_images(holder, spec(loras=loras))[0])

    one_way, other_way = render(1.0, 0.25), render(0.25, 1.0)
    assert (one_way != other_way).any()
    assert len(loaded_adapters(holder.pipe)) == 2
    # The second file is -2x the first: these weights cancel out (up to rounding).
    base = pixels(generate_images(holder, spec())[0])
    assert abs(render(1.0, 0.5) - base).max() <= 1
    assert abs(one_way - base).max() > 1


def test_a_new_stack_replaces_the_previous_adapters(
    holder: Any, trained_lora: Any, second_lora: str
) -> None:
    first = apply_loras(holder.pipe, [LoraSpec(trained_lora.lora_path, 1.0, "a")])
    second = apply_loras(holder.pipe, [LoraSpec(second_lora, 1.0, "b")])
    assert loaded_adapters(holder.pipe) == set(second)
    assert not set(first) & set(second)
    assert apply_loras(holder.pipe, []) == []
    assert loaded_adapters(holder.pipe) == set()


@pytest.mark.parametrize("scheduler", sorted(SCHEDULERS))
def test_every_scheduler_renders(holder: Any, scheduler: str) -> None:
    request = spec(scheduler=scheduler, width=48, height=40)
    image = generate_images(holder, request)[0]
    assert image.size == (48, 40)


def test_on_image_sees_each_image_and_should_stop_stops(holder: Any) -> None:
    seen: list[int] = []
    images = generate_images(
        holder, spec(num_images=2), on_image=lambda i, image: seen.append(i)
    )
    assert seen == [0, 1]
    assert len(images) == 2

    polls: list[int] = []

    def stop_after_three() -> bool:
        polls.append(1)
        return len(polls) >= 3

    with pytest.raises(GenerationStopped):
        generate_images(holder, spec(steps=10), should_stop=stop_after_three)
    assert len(polls) == 3  # before the image, then after steps 1 and 2


def test_an_exception_from_should_stop_propagates_unchanged(holder: Any) -> None:
    class Cancelled(Exception):
        pass

    def cancel() -> bool:
        raise Cancelled

    with pytest.raises(Cancelled):
        generate_images(holder, spec(), should_stop=cancel)


def test_invalid_requests_are_refused_before_rendering(
    holder: Any, tmp_path: Path
) -> None:
    with pytest.raises(InvalidGenerationInput) as raised:
        generate_images(holder, spec(width=65, scheduler="warp"))
    assert "width must be a multiple of 8" in str(raised.value)
    assert "unknown scheduler 'warp'" in str(raised.value)
    missing = LoraSpec(str(tmp_path / "gone.safetensors"))
    with pytest.raises(InvalidGenerationInput, match="gone.safetensors cannot be read"):
        generate_images(holder, spec(loras=(missing,)))
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file")
    with pytest.raises(InvalidGenerationInput, match="could not be loaded"):
        generate_images(holder, spec(loras=(LoraSpec(str(junk)),)))


def test_training_renders_sample_images_with_the_lora(trained_lora: Any) -> None:
    from PIL import Image

    names = [Path(p).name for p in trained_lora.sample_paths]
    assert names == ["sample-00.png", "sample-01.png"]
    for path in trained_lora.sample_paths:
        with Image.open(path) as image:
            assert image.size == (64, 64)
