"""Which modules of a UNet and a text encoder get LoRA adapters.

The sets follow kohya sd-scripts (`networks/lora.py`), so a file trained here
covers what a kohya user expects. The rule there, applied to the model's own
`named_modules()` rather than to a list of paths (so tiny test models and
full-size ones, SD 1.x, 2.x and SDXL, all work):

- find every module of a target class;
- adapt each `nn.Linear` and 1x1 `nn.Conv2d` inside it at the network's rank;
- adapt each larger `nn.Conv2d` (3x3) inside it only when conv LoRA ("LoCon")
  is on, at the conv rank.

The target classes per `lora_targets` setting:

- "attention": the query, key, value and output projections of every
  `Attention` (what this project trained before the kohya set; 128 modules
  on SD 1.5).
- "transformer" (kohya's default): everything inside each
  `Transformer2DModel`: proj_in, proj_out, attn1/attn2 to_q/to_k/to_v/to_out.0,
  ff.net.0.proj, ff.net.2. 12 per transformer, 192 on SD 1.5.
- "transformer+conv": plus `ResnetBlock2D`, `Downsample2D` and `Upsample2D`,
  as kohya does when `conv_dim` is given. Their 3x3 convs (conv1, conv2, the
  samplers' conv) are LoCon; their Linear and 1x1 conv (time_emb_proj,
  conv_shortcut) come in at the network rank, because kohya's rule takes every
  Linear/1x1 conv of a target class. conv_in, conv_out and the time/added
  embeddings belong to no target class, so neither kohya nor we adapt them.

Text encoders (CLIP ViT-L, OpenCLIP bigG): every Linear inside `CLIPAttention`
and `CLIPMLP`: self_attn q/k/v/out_proj and mlp fc1/fc2, 6 per layer (72 for
ViT-L's 12 layers). The SDXL text projection sits outside both, as in kohya.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import nn

ATTENTION_CLASSES = ("Attention",)
ATTENTION_PROJECTIONS = ("to_q", "to_k", "to_v", "to_out.0")
TRANSFORMER_CLASSES = ("Transformer2DModel",)
CONV_BLOCK_CLASSES = ("ResnetBlock2D", "Downsample2D", "Upsample2D")
# transformers names the attention class by its kernel in some versions.
TEXT_ENCODER_CLASSES = (
    "CLIPAttention",
    "CLIPSdpaAttention",
    "CLIPFlashAttention2",
    "CLIPMLP",
)


@dataclass(frozen=True)
class Targets:
    """Module paths (`named_modules()` names) to adapt, in model order."""

    linear: list[str]  # nn.Linear and 1x1 nn.Conv2d: the network's rank and alpha
    conv: list[str]  # larger nn.Conv2d (LoCon): conv_rank, conv_alpha

    @property
    def all(self) -> list[str]:
        return self.linear + self.conv

    def __len__(self) -> int:
        return len(self.linear) + len(self.conv)


def unet_targets(unet: nn.Module, lora_targets: str) -> Targets:
    """The UNet modules a `lora_targets` setting adapts (see the module docstring)."""
    if lora_targets == "attention":
        linear = [
            name
            for name in _children_of(unet, ATTENTION_CLASSES)
            if name.endswith(tuple("." + p for p in ATTENTION_PROJECTIONS))
        ]
        return Targets(linear=linear, conv=[])
    if lora_targets == "transformer":
        classes = TRANSFORMER_CLASSES
    elif lora_targets == "transformer+conv":
        classes = TRANSFORMER_CLASSES + CONV_BLOCK_CLASSES
    else:
        raise ValueError(f"Unknown lora_targets {lora_targets!r}")
    modules = dict(unet.named_modules())
    found = _children_of(unet, classes)
    return Targets(
        linear=[n for n in found if not _is_large_conv(modules[n])],
        conv=[n for n in found if _is_large_conv(modules[n])],
    )


def text_encoder_targets(text_encoder: nn.Module) -> list[str]:
    """Every Linear of a CLIP text encoder's attention and MLP blocks."""
    modules = dict(text_encoder.named_modules())
    return [
        n
        for n in _children_of(text_encoder, TEXT_ENCODER_CLASSES)
        if not _is_large_conv(modules[n])
    ]


def _children_of(model: nn.Module, classes: tuple[str, ...]) -> list[str]:
    """Paths of the Linear and Conv2d modules inside modules of these classes.

    Classes are compared by name, as kohya does, so diffusers' and
    transformers' own subclasses of nn.Module need no import here.
    """
    from torch import nn

    found: dict[str, None] = {}  # ordered, and a module nested twice counts once
    for name, module in model.named_modules():
        if type(module).__name__ not in classes:
            continue
        for child_name, child in module.named_modules():
            if child_name and isinstance(child, (nn.Linear, nn.Conv2d)):
                found[f"{name}.{child_name}" if name else child_name] = None
    return list(found)


def _is_large_conv(module: nn.Module) -> bool:
    """A Conv2d with a kernel larger than 1x1: LoCon, not plain LoRA."""
    from torch import nn

    return isinstance(module, nn.Conv2d) and tuple(module.kernel_size) != (1, 1)
