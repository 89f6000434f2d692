"""Fused LoRA stacks on the tiny real pipeline: the same images as adapters,
kept fused between jobs that share a stack, and the exact base weights back
when the stack changes."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from training.ml.generate import (
    GenerateSpec,
    LoraSpec,
    PipelineHolder,
    fused_stack,
    generate_images,
    loaded_adapters,
    stack_key,
)
from training.ml.kohya import save_kohya_lora
from training.tests.test_ml_generate import pixels

# diffusers' schedulers trip a numpy 2 deprecation on every timestep setup.
pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation:DeprecationWarning"
)


def spec(*loras: LoraSpec) -> GenerateSpec:
    return GenerateSpec(
        "zxq a cat", steps=2, seed=7, width=64, height=64, loras=tuple(loras)
    )


def random_lora(
    pipe: Any, path: Path, *, seed: int, unet: bool = True, text: bool = True
) -> str:
    """A kohya LoRA with random weights on the attention projections of the
    UNet and/or the text encoder, strong enough to move the tiny model."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    parts = [("lora_unet_", pipe.unet, ("to_q", "to_k", "to_v", "to_out.0"))] * unet
    parts += [
        ("lora_te_", pipe.text_encoder, ("q_proj", "k_proj", "v_proj", "out_proj"))
    ] * text
    state = {}
    for prefix, model, targets in parts:
        for name, module in model.named_modules():
            if not name.endswith(targets):
                continue
            key = prefix + name.replace(".", "_")
            down = torch.randn(4, module.in_features, generator=generator)
            up = torch.randn(module.out_features, 4, generator=generator)
            state[f"{key}.lora_down.weight"] = down / module.in_features**0.5
            state[f"{key}.lora_up.weight"] = up * 0.5
            state[f"{key}.alpha"] = torch.tensor(4.0)
    return str(save_kohya_lora(state, path, {"ss_network_dim": "4"}))


def weights(pipe: Any) -> dict[str, Any]:
    """The UNet's and text encoder's base weights, whatever LoRA layers wrap them."""
    found = {}
    for part in ("unet", "text_encoder"):
        for name, value in getattr(pipe, part).state_dict().items():
            if "lora_" not in name:
                found[f"{part}.{name.replace('.base_layer', '')}"] = value.clone()
    return found


def spy(method: Any, calls: list[str]) -> Any:
    def called(*args: Any, **kwargs: Any) -> Any:
        calls.append(method.__name__)
        return method(*args, **kwargs)

    return called


@pytest.fixture(scope="module")
def fused(tiny_base: Path) -> Any:
    holder = PipelineHolder(str(tiny_base), device="cpu")
    yield holder
    holder.close()


@pytest.fixture(scope="module")
def unfused(tiny_base: Path) -> Any:
    holder = PipelineHolder(str(tiny_base), device="cpu", fuse_loras=False)
    yield holder
    holder.close()


@pytest.fixture(scope="module")
def loras(unfused: Any, tmp_path_factory: Any) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("fuse-loras")
    pipe = unfused.pipe
    return {
        "both": random_lora(pipe, folder / "both.safetensors", seed=1),
        "other": random_lora(pipe, folder / "other.safetensors", seed=2),
        "text": random_lora(pipe, folder / "text.safetensors", seed=3, unet=False),
    }


def test_fused_images_match_the_adapters_within_rounding(
    fused: Any, unfused: Any, loras: dict[str, str]
) -> None:
    stack = (LoraSpec(loras["both"], 0.8, "a"), LoraSpec(loras["other"], 0.5, "b"))
    base = pixels(generate_images(unfused, spec())[0])
    as_adapters = pixels(generate_images(unfused, spec(*stack))[0])
    as_fused = pixels(generate_images(fused, spec(*stack))[0])
    assert abs(as_adapters - base).max() > 10  # the stack moves the image
    assert abs(as_fused - as_adapters).max() <= 2
    assert fused_stack(fused.pipe) == stack_key(stack)
    assert fused_stack(unfused.pipe) is None


def test_a_text_encoder_only_lora_is_fused_too(
    fused: Any, unfused: Any, loras: dict[str, str]
) -> None:
    stack = (LoraSpec(loras["text"], 1.0, "text"),)
    base = pixels(generate_images(unfused, spec())[0])
    as_adapters = pixels(generate_images(unfused, spec(*stack))[0])
    as_fused = pixels(generate_images(fused, spec(*stack))[0])
    assert abs(as_adapters - base).max() > 10
    assert abs(as_fused - as_adapters).max() <= 2
    assert fused_stack(fused.pipe) == stack_key(stack)


def test_the_same_stack_stays_fused_between_jobs(
    fused: Any, loras: dict[str, str], tmp_path: Path, monkeypatch: Any
) -> None:
    stack = (LoraSpec(loras["both"], 0.8, "a"), LoraSpec(loras["other"], 0.5, "b"))
    first = pixels(generate_images(fused, spec(*stack))[0])
    calls: list[str] = []
    pipe = fused.pipe
    for method in ("fuse_lora", "unfuse_lora", "load_lora_weights"):
        monkeypatch.setattr(pipe, method, spy(getattr(pipe, method), calls))
    # The same files by content (a copy elsewhere), the same weights, another order.
    copy = shutil.copy(loras["other"], tmp_path / "renamed.safetensors")
    same = (LoraSpec(str(copy), 0.5, "b"), LoraSpec(loras["both"], 0.8, "a"))
    again = pixels(generate_images(fused, spec(*same))[0])
    assert calls == []
    assert (again == first).all()
    # Another weight is another stack: unfused, then fused at the new weight.
    generate_images(fused, spec(stack[0], LoraSpec(loras["other"], 0.6, "b")))
    assert calls == ["unfuse_lora", "fuse_lora"]


def test_a_new_stack_after_fusing_renders_as_on_a_fresh_pipeline(
    fused: Any, tiny_base: Path, loras: dict[str, str]
) -> None:
    first = (LoraSpec(loras["both"], 1.0, "a"),)
    second = (LoraSpec(loras["other"], 0.7, "b"), LoraSpec(loras["text"], 0.4, "t"))
    generate_images(fused, spec(*first))
    after_change = pixels(generate_images(fused, spec(*second))[0])
    fresh = PipelineHolder(str(tiny_base), device="cpu")
    try:
        assert (pixels(generate_images(fresh, spec(*second))[0]) == after_change).all()
    finally:
        fresh.close()
    assert loaded_adapters(fused.pipe) == {
        name for name in loaded_adapters(fused.pipe) if name.startswith(("b_", "t_"))
    }


def test_unfusing_restores_the_base_weights_bit_for_bit(
    fused: Any, tiny_base: Path, loras: dict[str, str]
) -> None:
    import torch

    fresh = PipelineHolder(str(tiny_base), device="cpu")
    try:
        base = weights(fresh.pipe)
        base_image = pixels(generate_images(fresh, spec())[0])
    finally:
        fresh.close()
    stack = (LoraSpec(loras["both"], 0.9, "a"), LoraSpec(loras["text"], 0.6, "t"))
    generate_images(fused, spec(*stack))
    moved = weights(fused.pipe)
    assert any(not torch.equal(moved[k], v) for k, v in base.items())
    assert (pixels(generate_images(fused, spec())[0]) == base_image).all()
    restored = weights(fused.pipe)
    assert restored.keys() == base.keys()
    assert all(torch.equal(restored[k], v) for k, v in base.items())
    assert fused_stack(fused.pipe) is None
    assert loaded_adapters(fused.pipe) == set()
