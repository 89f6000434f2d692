"""SDXL UNet LoRA keys in sd-scripts' SGM names: the mapping on full-size SDXL,
and diffusers reading our files back onto the very modules we trained, on a
UNet with SDXL's real block structure at test widths."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from training.ml.kohya import kohya_key_problems, kohya_module_name, save_kohya_lora
from training.ml.network import LoraNetwork
from training.ml.sdxl_keys import SgmNames
from training.ml.shapes import (
    SDXL_UNET,
    TINY_SDXL_UNET,
    TINY_SDXL_VAE,
    TINY_TEXT,
    TINY_TEXT_2,
)
from training.ml.targets import unet_targets
from training.tests.conftest import make_train_config
from training.tests.test_ml_network import adapter_of, library_warnings, randomize

# SDXL base's block structure (3 levels, 2 layers each, no attention at the
# top level, 1/2/2 transformer layers) at tiny widths.
SDXL_STRUCTURE_UNET: dict[str, Any] = {
    **TINY_SDXL_UNET,
    "layers_per_block": 2,
    "block_out_channels": (32, 64, 64),
    "down_block_types": (
        "DownBlock2D",
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
    ),
    "up_block_types": ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    "transformer_layers_per_block": (1, 2, 2),
    "attention_head_dim": (2, 4, 4),
}


def full_size_sdxl_unet() -> Any:
    import torch
    from diffusers import UNet2DConditionModel

    with torch.device("meta"):
        return UNet2DConditionModel(**SDXL_UNET)


def test_full_size_sdxl_transformer_modules_get_sd_scripts_722_names() -> None:
    unet = full_size_sdxl_unet()
    names = SgmNames(unet.config)
    paths = unet_targets(unet, "transformer").all
    sgm = [names.to_sgm(p) for p in paths]
    assert len(set(sgm)) == len(sgm) == 722
    # Per SGM block: 2 + 10 per transformer layer (1/2/10 per level in SDXL).
    per_block = Counter(".".join(n.split(".")[:2]) for n in sgm)
    assert per_block == {
        "input_blocks.4": 22,
        "input_blocks.5": 22,
        "input_blocks.7": 102,
        "input_blocks.8": 102,
        "middle_block.1": 102,
        **{f"output_blocks.{i}": 102 for i in (0, 1, 2)},
        **{f"output_blocks.{i}": 22 for i in (3, 4, 5)},
    }
    # Keys as sd-scripts writes them for SDXL base.
    keys = {kohya_module_name(n) for n in sgm}
    assert {
        "lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q",
        "lora_unet_input_blocks_8_1_transformer_blocks_9_ff_net_2",
        "lora_unet_middle_block_1_proj_in",
        "lora_unet_output_blocks_0_1_transformer_blocks_9_attn2_to_out_0",
        "lora_unet_output_blocks_5_1_transformer_blocks_1_ff_net_0_proj",
    } <= keys
    assert not [k for k in keys if "down_blocks" in k or "up_blocks" in k]


def test_every_linear_and_conv_of_full_size_sdxl_has_one_sgm_name_and_back() -> None:
    from torch import nn

    unet = full_size_sdxl_unet()
    names = SgmNames(unet.config)
    paths = [
        n for n, m in unet.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))
    ]
    sgm = {p: names.to_sgm(p) for p in paths}
    assert len(set(sgm.values())) == len(paths)
    assert all(names.to_diffusers(s) == p for p, s in sgm.items())
    assert {
        "down_blocks.0.resnets.1.conv1": "input_blocks.2.0.in_layers.2",
        "down_blocks.1.resnets.0.conv_shortcut": "input_blocks.4.0.skip_connection",
        "down_blocks.0.downsamplers.0.conv": "input_blocks.3.0.op",
        "down_blocks.1.downsamplers.0.conv": "input_blocks.6.0.op",
        "mid_block.resnets.1.time_emb_proj": "middle_block.2.emb_layers.1",
        "up_blocks.0.resnets.2.conv2": "output_blocks.2.0.out_layers.3",
        "up_blocks.0.upsamplers.0.conv": "output_blocks.2.2.conv",
        "up_blocks.1.upsamplers.0.conv": "output_blocks.5.2.conv",
        "conv_in": "input_blocks.0.0",
        "conv_out": "out.2",
    }.items() <= sgm.items()
    with pytest.raises(KeyError, match="lies in no block"):
        names.to_sgm("up_blocks.2.upsamplers.0.conv")  # the last level has none


def sdxl_structure_pipeline() -> Any:
    from training.ml.shapes import assemble_sdxl_pipeline

    return assemble_sdxl_pipeline(
        SDXL_STRUCTURE_UNET, TINY_SDXL_VAE, TINY_TEXT, TINY_TEXT_2, seed=0
    )


def test_diffusers_loads_sgm_keys_onto_the_trained_modules_of_sdxls_structure(
    tmp_path: Path,
) -> None:
    """Every UNet module of the LoCon set (transformers, resnets, samplers),
    saved under its SGM name, lands on the same module in diffusers, with its
    scale, and nothing is left over or unmatched."""
    import torch

    config = make_train_config(
        Path("-"),
        tmp_path,
        lora_targets="transformer+conv",
        rank=4,
        alpha=2.0,
        conv_rank=2,
        conv_alpha=1.0,
        train_text_encoder=True,  # a UNet-only file draws "No LoRA keys" for CLIP
    )
    pipe = sdxl_structure_pipeline()
    torch.manual_seed(0)
    network = LoraNetwork.attach(
        pipe.unet,
        [pipe.text_encoder, pipe.text_encoder_2],
        config,
        family="sdxl",
        device="cpu",
        dtype=torch.float32,
    )
    randomize(network)
    state = network.kohya_state()
    unet_keys = [k for k in state if k.startswith("lora_unet_")]
    assert not [k for k in unet_keys if "_down_blocks_" in k or "_up_blocks_" in k]
    assert "lora_unet_output_blocks_5_2_conv.lora_down.weight" in state
    path = save_kohya_lora(state, tmp_path / "xl.safetensors", {})
    assert kohya_key_problems(path) == []

    fresh = sdxl_structure_pipeline()
    targets = unet_targets(fresh.unet, "transformer+conv")
    names = SgmNames(fresh.unet.config)
    with library_warnings() as warned:
        fresh.load_lora_weights(str(path))
    assert not [m for m in warned if "LoRA" in m or "keys" in m], warned
    for module_path in targets.all:
        key = kohya_module_name(names.to_sgm(module_path))
        down, up, scaling = adapter_of(fresh.unet.get_submodule(module_path))
        assert down.detach().equal(state[f"{key}.lora_down.weight"]), module_path
        assert up.detach().equal(state[f"{key}.lora_up.weight"]), module_path
        assert scaling == state[f"{key}.alpha"].item() / down.shape[0], module_path
    adapted = [n for n, m in fresh.unet.named_modules() if hasattr(m, "lora_A")]
    assert sorted(adapted) == sorted(targets.all)
