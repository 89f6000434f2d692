"""Which modules each lora_targets setting adapts, against the models' own structure.

The expected sets are derived here from diffusers' block classes (isinstance,
named children), not from training.ml.targets' class-name rule; the full-size
counts are kohya sd-scripts' (192 UNet modules on SD 1.5, 72 per CLIP ViT-L).
Full-size models are built on the meta device: no weights, no memory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from training.ml.shapes import (
    SD15_TEXT,
    SD15_UNET,
    SDXL_TEXT,
    SDXL_TEXT_2,
    SDXL_UNET,
)
from training.ml.targets import text_encoder_targets, unet_targets


def meta_unet(config: dict[str, Any]) -> Any:
    import torch
    from diffusers import UNet2DConditionModel

    with torch.device("meta"):
        return UNet2DConditionModel(**config)


def meta_text_encoder(config: dict[str, Any], *, projection: bool = False) -> Any:
    import torch
    from transformers import (
        CLIPTextConfig,
        CLIPTextModel,
        CLIPTextModelWithProjection,
    )

    model_class = CLIPTextModelWithProjection if projection else CLIPTextModel
    with torch.device("meta"):
        return model_class(CLIPTextConfig(vocab_size=49408, **config))


@pytest.fixture(scope="module")
def tiny_unet(tiny_base: Path) -> Any:
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel.from_pretrained(tiny_base / "unet")


def transformer_modules(unet: Any) -> set[str]:
    """proj_in/proj_out of each Transformer2DModel plus every Linear of each
    BasicTransformerBlock (attn1, attn2, ff)."""
    from diffusers.models.attention import BasicTransformerBlock
    from diffusers.models.transformers.transformer_2d import Transformer2DModel
    from torch import nn

    found = set()
    for name, module in unet.named_modules():
        if isinstance(module, Transformer2DModel):
            found |= {f"{name}.proj_in", f"{name}.proj_out"}
        if isinstance(module, BasicTransformerBlock):
            found |= {
                f"{name}.{child}"
                for child, m in module.named_modules()
                if isinstance(m, nn.Linear)
            }
    return found


def count_of(unet: Any, class_name: str) -> int:
    return sum(type(m).__name__ == class_name for m in unet.modules())


def test_transformer_targets_every_linear_and_1x1_conv_of_the_transformers(
    tiny_unet: Any,
) -> None:
    targets = unet_targets(tiny_unet, "transformer")
    assert set(targets.linear) == transformer_modules(tiny_unet)
    assert targets.conv == []
    # 12 per transformer: proj_in, proj_out, 2 x 4 attention projections, 2 ff.
    assert len(targets) == 12 * count_of(tiny_unet, "Transformer2DModel") == 48
    # SD 1.5's proj_in/proj_out are 1x1 convs, and they are in.
    modules = dict(tiny_unet.named_modules())
    assert {type(modules[n]).__name__ for n in targets.linear} == {"Linear", "Conv2d"}


def test_attention_targets_the_four_projections_of_each_attention(
    tiny_unet: Any,
) -> None:
    targets = unet_targets(tiny_unet, "attention")
    projections = ("to_q", "to_k", "to_v", "to_out.0")
    expected = {
        name for name, _ in tiny_unet.named_modules() if name.endswith(projections)
    }
    assert set(targets.linear) == expected
    assert len(targets) == 4 * count_of(tiny_unet, "Attention") == 32


def test_transformer_plus_conv_adds_the_resnets_and_samplers_as_kohya_does(
    tiny_unet: Any,
) -> None:
    from diffusers.models.resnet import Downsample2D, ResnetBlock2D, Upsample2D

    convs, linears = set(), transformer_modules(tiny_unet)
    for name, module in tiny_unet.named_modules():
        if isinstance(module, ResnetBlock2D):
            convs |= {f"{name}.conv1", f"{name}.conv2"}
            linears.add(f"{name}.time_emb_proj")
            if module.conv_shortcut is not None:  # 1x1: the network's rank
                linears.add(f"{name}.conv_shortcut")
        if isinstance(module, (Downsample2D, Upsample2D)):
            convs.add(f"{name}.conv")
    targets = unet_targets(tiny_unet, "transformer+conv")
    assert set(targets.conv) == convs
    assert set(targets.linear) == linears
    modules = dict(tiny_unet.named_modules())
    assert {modules[n].kernel_size for n in targets.conv} == {(3, 3)}
    # The model's own stem and head are in no target block.
    assert not {"conv_in", "conv_out"} & set(targets.all)
    assert (len(targets.linear), len(targets.conv)) == (61, 18)


def test_full_size_sd15_counts_match_kohya() -> None:
    unet = meta_unet(SD15_UNET)
    assert len(unet_targets(unet, "attention")) == 128
    assert len(unet_targets(unet, "transformer")) == 192
    locon = unet_targets(unet, "transformer+conv")
    # sd-scripts with conv_dim reports 278 UNet modules on SD 1.5.
    assert (len(locon.linear), len(locon.conv), len(locon)) == (228, 50, 278)
    text = text_encoder_targets(meta_text_encoder(SD15_TEXT))
    assert len(text) == 72
    assert {name.rsplit(".", 1)[-1] for name in text} == {
        "q_proj",
        "k_proj",
        "v_proj",
        "out_proj",
        "fc1",
        "fc2",
    }


def test_full_size_sdxl_counts_match_kohya() -> None:
    # sd-scripts: 722 UNet modules, 72 + 192 in the two text encoders.
    assert len(unet_targets(meta_unet(SDXL_UNET), "transformer")) == 722
    assert len(text_encoder_targets(meta_text_encoder(SDXL_TEXT))) == 72
    te2 = meta_text_encoder(SDXL_TEXT_2, projection=True)
    targets = text_encoder_targets(te2)
    assert len(targets) == 192
    assert not any("text_projection" in name for name in targets)


def test_an_unknown_setting_is_refused(tiny_unet: Any) -> None:
    with pytest.raises(ValueError, match="Unknown lora_targets 'everything'"):
        unet_targets(tiny_unet, "everything")
