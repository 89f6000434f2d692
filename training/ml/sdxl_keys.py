"""SDXL UNet module names: diffusers' paths and the SGM ("ldm") names of the
original SDXL UNet, which kohya sd-scripts trains on and writes into its LoRA
files (`lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q`). A1111,
ComfyUI and Civitai's tools expect SDXL LoRAs in that form; diffusers reads
both. SD 1.x/2.x files keep diffusers' names: sd-scripts trains those on the
diffusers UNet.

The two UNets hold the same modules in a different nesting. SGM numbers every
step of the down path in one list, `input_blocks`, and every step of the up
path in `output_blocks`; each entry is a small sequence (resnet first, then
the transformer, then an up-sampler where the level has one). Walking a
diffusers config in order gives the numbering:

- `input_blocks.0.0` is conv_in; then per down level, per layer j:
  `down_blocks.i.resnets.j` -> `input_blocks.n.0` and
  `down_blocks.i.attentions.j` -> `input_blocks.n.1`, n counting on; after
  each level but the last its down-sampler takes an entry of its own:
  `down_blocks.i.downsamplers.0` -> `input_blocks.n.0`.
- `mid_block`: resnet 0, transformer, resnet 1 -> `middle_block.0/1/2`.
- per up level, per layer j (one more layer than the down level):
  `up_blocks.i.resnets.j` -> `output_blocks.n.0`, attentions -> `.1`, and
  on the level's last layer its up-sampler after them (`.2`, or `.1` in a
  level without attention).

Inside a block, transformer modules keep their names (`proj_in`,
`transformer_blocks.0.attn2.to_k`, `ff.net.0.proj`, ...); resnets and samplers
rename theirs (`RESNET_CHILDREN`, `DOWNSAMPLER_CHILDREN`). SDXL base has two
layers per level and three levels: input_blocks 0-8, output_blocks 0-8.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# diffusers' ResnetBlock2D children and the SGM ResBlock's Sequential slots.
RESNET_CHILDREN = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "time_emb_proj": "emb_layers.1",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "conv_shortcut": "skip_connection",
}
DOWNSAMPLER_CHILDREN = {"conv": "op"}
UPSAMPLER_CHILDREN = {"conv": "conv"}
# Modules outside the block lists (no LoRA target picks them; named for
# completeness, so every Linear and Conv2d of the UNet has an SGM name).
TOP_LEVEL = {
    "conv_in": "input_blocks.0.0",
    "time_embedding.linear_1": "time_embed.0",
    "time_embedding.linear_2": "time_embed.2",
    "add_embedding.linear_1": "label_emb.0.0",
    "add_embedding.linear_2": "label_emb.0.2",
    "conv_norm_out": "out.0",
    "conv_out": "out.2",
}


@dataclass(frozen=True)
class _Block:
    """One block's names on both sides, and how its children are renamed."""

    diffusers: str  # "down_blocks.1.resnets.0"
    sgm: str  # "input_blocks.4.0"
    children: Mapping[str, str]  # diffusers child -> SGM child; empty: unchanged


class SgmNames:
    """The SGM name of each module of one SDXL-layout diffusers UNet, and back.

    Built from the UNet's config (`unet.config`): its down/up block types say
    which levels have attention, `layers_per_block` how many layers each has.
    """

    def __init__(self, unet_config: Mapping[str, Any]) -> None:
        blocks = _blocks(unet_config)
        self._by_diffusers = {b.diffusers: b for b in blocks}
        self._by_sgm = {b.sgm: b for b in blocks}

    def to_sgm(self, path: str) -> str:
        """`down_blocks.1.attentions.0.proj_in` -> `input_blocks.4.1.proj_in`."""
        if path in TOP_LEVEL:
            return TOP_LEVEL[path]
        block, child = _split(path, self._by_diffusers)
        return _join(block.sgm, _rename(child, block.children, path))

    def to_diffusers(self, sgm_path: str) -> str:
        """The inverse of `to_sgm`."""
        top = {sgm: path for path, sgm in TOP_LEVEL.items()}
        if sgm_path in top:
            return top[sgm_path]
        block, child = _split(sgm_path, self._by_sgm)
        inverse = {sgm: ours for ours, sgm in block.children.items()}
        return _join(block.diffusers, _rename(child, inverse, sgm_path))


def _blocks(config: Mapping[str, Any]) -> list[_Block]:
    """Every resnet, transformer and sampler block, walking the UNet in order."""
    down_types = list(config["down_block_types"])
    up_types = list(config["up_block_types"])
    layers = config["layers_per_block"]
    if isinstance(layers, int):
        layers = [layers] * len(down_types)
    blocks: list[_Block] = []
    index = 1  # input_blocks.0 is conv_in
    for level, block_type in enumerate(down_types):
        attention = _has_attention(block_type)
        for layer in range(layers[level]):
            side = ("down_blocks", level, layer, "input_blocks", index)
            blocks += _layer(*side, attention=attention)
            index += 1
        if level < len(down_types) - 1:
            down = f"down_blocks.{level}.downsamplers.0"
            blocks.append(_Block(down, f"input_blocks.{index}.0", DOWNSAMPLER_CHILDREN))
            index += 1
    blocks += _mid_blocks(config)
    index = 0
    for level, block_type in enumerate(up_types):
        attention = _has_attention(block_type)
        level_layers = list(reversed(layers))[level] + 1
        for layer in range(level_layers):
            side = ("up_blocks", level, layer, "output_blocks", index)
            blocks += _layer(*side, attention=attention)
            if layer == level_layers - 1 and level < len(up_types) - 1:
                up = f"up_blocks.{level}.upsamplers.0"
                slot = 2 if attention else 1  # after the resnet and transformer
                sgm = f"output_blocks.{index}.{slot}"
                blocks.append(_Block(up, sgm, UPSAMPLER_CHILDREN))
            index += 1
    return blocks


def _layer(
    side: str, level: int, layer: int, sgm: str, index: int, *, attention: bool
) -> list[_Block]:
    """One layer's resnet and, in a level with attention, its transformer."""
    resnet = _Block(
        f"{side}.{level}.resnets.{layer}", f"{sgm}.{index}.0", RESNET_CHILDREN
    )
    if not attention:
        return [resnet]
    return [
        resnet,
        _Block(f"{side}.{level}.attentions.{layer}", f"{sgm}.{index}.1", {}),
    ]


def _mid_blocks(config: Mapping[str, Any]) -> list[_Block]:
    """resnet, transformer, resnet -> middle_block.0/1/2 (no transformer: 0/1)."""
    mid_type = config.get("mid_block_type", "UNetMidBlock2DCrossAttn")
    if mid_type is None:
        return []
    if not _has_attention(mid_type):
        return [
            _Block("mid_block.resnets.0", "middle_block.0", RESNET_CHILDREN),
            _Block("mid_block.resnets.1", "middle_block.1", RESNET_CHILDREN),
        ]
    return [
        _Block("mid_block.resnets.0", "middle_block.0", RESNET_CHILDREN),
        _Block("mid_block.attentions.0", "middle_block.1", {}),
        _Block("mid_block.resnets.1", "middle_block.2", RESNET_CHILDREN),
    ]


def _has_attention(block_type: str) -> bool:
    """CrossAttnDownBlock2D, UNetMidBlock2DCrossAttn, ... (not DownBlock2D)."""
    return "Attn" in block_type


def _split(path: str, blocks: Mapping[str, _Block]) -> tuple[_Block, str]:
    """The block a module path lies in, and the rest of the path.

    Block paths have four parts (`down_blocks.1.resnets.0`) or three
    (`input_blocks.4.1`); the mid block one less (`mid_block.resnets.0`,
    `middle_block.1`).
    """
    parts = path.split(".")
    for size in (4, 3, 2):
        block = blocks.get(".".join(parts[:size]))
        if block is not None:
            return block, ".".join(parts[size:])
    raise KeyError(f"{path!r} lies in no block of this SDXL UNet")


def _rename(child: str, children: Mapping[str, str], path: str) -> str:
    """Rename a block's child (`conv1` -> `in_layers.2`); transformer children
    (an empty map) keep their names."""
    if not children:
        return child
    head = next((c for c in children if child == c or child.startswith(c + ".")), None)
    if head is None:
        raise KeyError(f"{path!r}: {child!r} has no SGM name")
    return children[head] + child[len(head) :]


def _join(block: str, child: str) -> str:
    return f"{block}.{child}" if child else block
