"""SDXL generation on the tiny real SDXL pipeline: LoRAs (single, stacked,
fused), progress, previews and cancel through the same holder as SD 1.5, and
LoRAs of another family refused by name."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from training.ml.config import GenerationStopped, InvalidGenerationInput
from training.ml.generate import (
    GenerateSpec,
    LoraSpec,
    PipelineHolder,
    fused_stack,
    generate_images,
    latent_preview,
    lora_family,
    stack_key,
)
from training.ml.kohya import save_kohya_lora
from training.tests.test_ml_generate import pixels

# diffusers' schedulers trip a numpy 2 deprecation on every timestep setup.
pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation:DeprecationWarning"
)

ATTENTION = ("to_q", "to_k", "to_v", "to_out.0")
TEXT_ATTENTION = ("q_proj", "k_proj", "v_proj", "out_proj")


def spec(*loras: LoraSpec, **overrides: Any) -> GenerateSpec:
    defaults: dict[str, Any] = {
        "prompt": "zxq a cat",
        "steps": 2,
        "seed": 7,
        "width": 64,
        "height": 64,
        "scheduler": "euler",
    }
    return GenerateSpec(**{**defaults, **overrides}, loras=tuple(loras))


def sdxl_lora(
    pipe: Any, path: Path, *, seed: int, metadata: dict[str, str] | None = None
) -> str:
    """A kohya SDXL LoRA by hand: random weights (non-zero up) on the UNet's
    attention projections and both text encoders' (lora_te1_, lora_te2_)."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    parts = (
        ("lora_unet_", pipe.unet, ATTENTION),
        ("lora_te1_", pipe.text_encoder, TEXT_ATTENTION),
        ("lora_te2_", pipe.text_encoder_2, TEXT_ATTENTION),
    )
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
    return str(save_kohya_lora(state, path, metadata or {"ss_network_dim": "4"}))


def one_module_lora(path: Path, module: str, width: int, **metadata: str) -> str:
    """A one-module LoRA whose down weight reads `width` features."""
    import torch

    state = {
        f"{module}.lora_down.weight": torch.ones(2, width),
        f"{module}.lora_up.weight": torch.ones(8, 2),
        f"{module}.alpha": torch.tensor(2.0),
    }
    return str(save_kohya_lora(state, path, metadata))


@pytest.fixture(scope="module")
def fused(tiny_sdxl_base: Path) -> Any:
    holder = PipelineHolder(str(tiny_sdxl_base), device="cpu")
    yield holder
    holder.close()


@pytest.fixture(scope="module")
def unfused(tiny_sdxl_base: Path) -> Any:
    holder = PipelineHolder(str(tiny_sdxl_base), device="cpu", fuse_loras=False)
    yield holder
    holder.close()


@pytest.fixture(scope="module")
def xl_loras(unfused: Any, tmp_path_factory: Any) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("xl-loras")
    pipe = unfused.pipe
    return {
        "one": sdxl_lora(pipe, folder / "one.safetensors", seed=1),
        "two": sdxl_lora(
            pipe, folder / "two.safetensors", seed=2, metadata={"family": "sdxl"}
        ),
    }


@pytest.fixture
def sd15_lora(tmp_path: Path) -> str:
    """An SD 1.5 LoRA as sd-scripts writes one (CLIP ViT-L's 768-wide text
    encoder), with no metadata: the family is read from its shapes."""
    return one_module_lora(
        tmp_path / "sd15.safetensors",
        "lora_te_text_model_encoder_layers_0_self_attn_q_proj",
        768,
    )


def test_an_sdxl_lora_changes_the_image_the_same_way_each_time(
    unfused: Any, xl_loras: dict[str, str]
) -> None:
    base = pixels(generate_images(unfused, spec())[0])
    first = pixels(generate_images(unfused, spec(LoraSpec(xl_loras["one"])))[0])
    again = pixels(generate_images(unfused, spec(LoraSpec(xl_loras["one"])))[0])
    assert abs(first - base).max() > 10
    assert (first == again).all()
    # All three parts were loaded: the UNet and both text encoders.
    adapters = unfused.pipe.get_list_adapters()
    assert {"unet", "text_encoder", "text_encoder_2"} <= set(adapters)
    assert (pixels(generate_images(unfused, spec())[0]) == base).all()


def test_stacked_sdxl_loras_fuse_to_the_adapters_image(
    fused: Any, unfused: Any, xl_loras: dict[str, str]
) -> None:
    one = LoraSpec(xl_loras["one"], 0.8, "one")
    two = LoraSpec(xl_loras["two"], 0.5, "two")
    alone = pixels(generate_images(unfused, spec(one))[0])
    as_adapters = pixels(generate_images(unfused, spec(one, two))[0])
    as_fused = pixels(generate_images(fused, spec(one, two))[0])
    assert abs(as_adapters - alone).max() > 10  # the second LoRA counts
    assert abs(as_fused - as_adapters).max() <= 2
    assert fused_stack(fused.pipe) == stack_key((one, two))


def test_sdxl_steps_previews_and_cancel(unfused: Any) -> None:
    steps: list[tuple[int, int]] = []
    previews: list[Any] = []
    generate_images(
        unfused,
        spec(steps=4, width=64, height=128),
        on_step=lambda step, total: steps.append((step, total)),
        on_preview=previews.append,
        preview_every=2,
    )
    assert steps == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert [p.size for p in previews] == [(64, 128)]
    polls: list[int] = []

    def stop_after_two_polls() -> bool:
        polls.append(1)
        return len(polls) > 2

    done: list[int] = []
    with pytest.raises(GenerationStopped):
        generate_images(
            unfused,
            spec(steps=3, num_images=2),
            should_stop=stop_after_two_polls,
            on_image=lambda index, image: done.append(index),
        )
    assert done == []  # stopped during the first image's second step


def test_an_sd15_lora_is_refused_on_sdxl_by_name(unfused: Any, sd15_lora: str) -> None:
    with pytest.raises(
        InvalidGenerationInput,
        match="LoRA cards is an SD 1.5 LoRA; the base model is SDXL",
    ):
        generate_images(unfused, spec(LoraSpec(sd15_lora, 1.0, "cards")))


def test_an_sdxl_lora_is_refused_on_sd15(
    tiny_base: Path, xl_loras: dict[str, str]
) -> None:
    holder = PipelineHolder(str(tiny_base), device="cpu")
    try:
        with pytest.raises(
            InvalidGenerationInput,
            match="LoRA one.safetensors is an SDXL LoRA; the base model is SD 1.5",
        ):
            generate_images(holder, spec(LoraSpec(xl_loras["one"]), scheduler="ddim"))
        assert not holder.pipe.get_list_adapters()  # refused before loading
    finally:
        holder.close()


def test_the_family_of_a_lora_file(tmp_path: Path, xl_loras: dict[str, str]) -> None:
    te = "lora_te_text_model_encoder_layers_0_self_attn_q_proj"
    cross = "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn2_to_k"
    self_attn = "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_k"

    def family(name: str, module: str, width: int, **metadata: str) -> str | None:
        return lora_family(
            one_module_lora(tmp_path / f"{name}.safetensors", module, width, **metadata)
        )

    assert lora_family(xl_loras["one"]) == "sdxl"  # lora_te1_/lora_te2_ keys
    assert lora_family(xl_loras["two"]) == "sdxl"  # our metadata
    assert family("ours", te, 768, family="sd2") == "sd2"
    assert family("xl", te, 768, ss_base_model_version="sdxl_base_v1-0") == "sdxl"
    assert family("v2", te, 768, ss_base_model_version="sd_v2_768_v") == "sd2"
    assert family("v1", te, 1024, ss_base_model_version="sd_v1") == "sd1"
    assert family("old_v2", te, 768, ss_v2="True") == "sd2"
    spec_xl = {"modelspec.architecture": "stable-diffusion-xl-v1-base/lora"}
    assert family("modelspec", te, 768, **spec_xl) == "sdxl"
    assert family("te768", te, 768) == "sd1"
    assert family("te1024", te, 1024) == "sd2"
    assert family("cross2048", cross, 2048) == "sdxl"
    assert family("cross1024", cross, 1024) == "sd2"
    assert family("tiny", cross, 32) is None  # a width no real family has
    assert family("self", self_attn, 768) is None  # self-attention: the UNet's own
    with pytest.raises(InvalidGenerationInput, match="cannot be read"):
        lora_family(tmp_path / "missing.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(InvalidGenerationInput, match="could not be loaded"):
        lora_family(tmp_path / "junk.safetensors")


def test_sdxl_previews_use_the_sdxl_latent_colours() -> None:
    import torch

    latents = torch.zeros(1, 4, 8, 8)
    latents[0, 1] = 1.0  # SDXL's second channel: red low, blue high
    sd1 = latent_preview(latents, 64, 64).getpixel((4, 4))
    sdxl = latent_preview(latents, 64, 64, family="sdxl").getpixel((4, 4))
    assert sdxl != sd1
    red, _, blue = sdxl
    assert red < 128 < blue
