"""LoRA files in kohya-ss format, the one A1111, ComfyUI and diffusers all read.

A module `down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_out.0` of the
UNet becomes the prefix
`lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_out_0`, with
three tensors under it: `.lora_down.weight` (peft's lora_A, rank x in),
`.lora_up.weight` (lora_B, out x rank) and `.alpha` (a 0-d tensor). The
effective scale is alpha / rank, as in peft.

The SDXL UNet is named as sd-scripts names it, by the original (SGM) UNet's
blocks: `lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q` for
diffusers' `down_blocks.1.attentions.0...` (`training.ml.sdxl_keys`).

Text encoders: `lora_te_` (SD 1.x/2.x), `lora_te1_` and `lora_te2_` (SDXL's
CLIP ViT-L and OpenCLIP bigG). A 3x3 conv ("LoCon") keeps its 4-D shapes:
lora_down is a conv (rank, in, kh, kw) and lora_up a 1x1 conv (out, rank, 1, 1).
"""

from __future__ import annotations

import json
import os
import struct
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

PREFIXES = ("lora_unet_", "lora_te_", "lora_te1_", "lora_te2_")
SDXL_TEXT_PREFIXES = ("lora_te1_", "lora_te2_")
SUFFIXES = (".lora_down.weight", ".lora_up.weight", ".alpha")
_PEFT_PARTS = {
    ".lora_A.weight": ".lora_down.weight",
    ".lora_B.weight": ".lora_up.weight",
}


def peft_to_kohya(
    state_dict: Mapping[str, torch.Tensor], alpha: float, prefix: str = "lora_unet_"
) -> dict[str, torch.Tensor]:
    """Rename a peft LoRA state dict (from `get_peft_model_state_dict`) to kohya keys.

    peft keys look like `<module path>.lora_A.weight`, sometimes with a leading
    `base_model.model.`; anything that is not lora_A/lora_B is refused.
    """
    import torch

    out: dict[str, torch.Tensor] = {}
    for key, tensor in state_dict.items():
        name = kohya_name(key, prefix)
        out[name] = tensor.detach().to("cpu").contiguous()
        out[name.rsplit(".lora_", 1)[0] + ".alpha"] = torch.tensor(float(alpha))
    return out


def kohya_name(peft_key: str, prefix: str = "lora_unet_") -> str:
    """The kohya key of one peft LoRA weight.

    `down_blocks.1.(...).to_out.0.lora_A.weight` becomes
    `lora_unet_down_blocks_1_(...)_to_out_0.lora_down.weight`.
    """
    part = next((p for p in _PEFT_PARTS if peft_key.endswith(p)), None)
    if part is None:
        raise ValueError(f"Not a peft LoRA weight: {peft_key!r}")
    module = peft_key[: -len(part)].removeprefix("base_model.model.")
    return kohya_module_name(module, prefix) + _PEFT_PARTS[part]


def kohya_module_name(module_path: str, prefix: str = "lora_unet_") -> str:
    """The kohya name of a module: `mid_block.attentions.0.proj_in` becomes
    `lora_unet_mid_block_attentions_0_proj_in`."""
    return prefix + module_path.replace(".", "_")


def kohya_key_problems(state_dict_or_path: Mapping[str, Any] | str | Path) -> list[str]:
    """What is wrong with a kohya LoRA's keys and shapes; empty means valid."""
    if isinstance(state_dict_or_path, (str, Path)):
        from safetensors.torch import load_file

        state_dict: Mapping[str, Any] = load_file(str(state_dict_or_path))
    else:
        state_dict = state_dict_or_path
    if not state_dict:
        return ["the file holds no tensors"]
    problems: list[str] = []
    modules: dict[str, dict[str, Any]] = {}
    for key, tensor in state_dict.items():
        suffix = next((s for s in SUFFIXES if key.endswith(s)), None)
        if not key.startswith(PREFIXES) or suffix is None:
            problems.append(
                f"{key}: expected {'/'.join(PREFIXES)}<module>{'|'.join(SUFFIXES)}"
            )
            continue
        modules.setdefault(key[: -len(suffix)], {})[suffix] = tensor
    if any(m.startswith("lora_te_") for m in modules) and any(
        m.startswith(SDXL_TEXT_PREFIXES) for m in modules
    ):
        problems.append(
            "mixes lora_te_ (SD 1.x/2.x) and lora_te1_/lora_te2_ (SDXL) keys"
        )
    for module, parts in sorted(modules.items()):
        missing = [s for s in SUFFIXES if s not in parts]
        if missing:
            problems.append(f"{module}: missing {', '.join(missing)}")
            continue
        problems += _shape_problems(module, *(parts[s] for s in SUFFIXES))
    return problems


def _shape_problems(module: str, down: Any, up: Any, alpha: Any) -> list[str]:
    """A module's LoRA is 2-D (Linear) or 4-D (conv, with a 1x1 lora_up)."""
    found = []
    down_shape, up_shape = tuple(down.shape), tuple(up.shape)
    if down.ndim not in (2, 4) or up.ndim != down.ndim:
        found.append(
            f"{module}: lora_down {down_shape} and lora_up {up_shape} should both "
            "be 2-D (Linear) or 4-D (conv)"
        )
    elif down_shape[0] != up_shape[1]:
        found.append(
            f"{module}: lora_down {down_shape} and lora_up {up_shape} "
            "disagree on the rank"
        )
    elif up.ndim == 4 and up_shape[2:] != (1, 1):
        found.append(f"{module}: a conv lora_up should be 1x1, is {up_shape}")
    if alpha.numel() != 1:
        found.append(
            f"{module}: alpha should be a scalar, has shape {tuple(alpha.shape)}"
        )
    return found


def save_kohya_lora(
    state_dict: Mapping[str, torch.Tensor],
    path: str | Path,
    metadata: Mapping[str, str],
) -> Path:
    """Write a kohya LoRA with string metadata: atomically, readable by all (0644)."""
    from safetensors.torch import save_file

    bad = [k for k, v in metadata.items() if not isinstance(v, str)]
    if bad:
        raise TypeError(f"safetensors metadata values must be strings: {bad}")
    problems = kohya_key_problems(state_dict)
    if problems:
        raise ValueError("Not a valid kohya LoRA: " + "; ".join(problems[:5]))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    scratch = Path(name)
    try:
        save_file(dict(state_dict), str(scratch), metadata=dict(metadata))
        _sort_header(scratch)
        # safetensors creates files 0600 whatever the umask; the web server may
        # run as another user and has to serve this file.
        scratch.chmod(0o644)
        scratch.replace(path)
    except BaseException:
        scratch.unlink(missing_ok=True)
        raise
    return path


def _sort_header(path: Path) -> None:
    """Rewrite the file's JSON header with sorted keys.

    safetensors writes the header in hash-map order, which differs between
    runs; sorted, the same weights and metadata always give the same bytes,
    so a content hash of the file identifies the LoRA.
    """
    raw = path.read_bytes()
    size = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8 : 8 + size])
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the format pads the header with spaces
    path.write_bytes(struct.pack("<Q", len(text)) + text + raw[8 + size :])


def read_lora_metadata(path: str | Path) -> dict[str, str]:
    """The safetensors header metadata of a LoRA file, without loading its tensors."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        return dict(handle.metadata() or {})


# ss_base_model_version as sd-scripts writes it (its model_util spells SD 1/2
# "sd" + "_v1"/"_v2" + "_v" for v-prediction; SDXL is "sdxl_base_v1-0").
BASE_MODEL_VERSIONS = {"sd1": "sd_v1", "sd2": "sd_v2", "sdxl": "sdxl_base_v1-0"}


def kohya_base_model_version(family: str, v_prediction: bool = False) -> str:
    """`ss_base_model_version`: "sd_v1", "sd_v2", "sd_v2_v", "sdxl_base_v1-0"."""
    version = BASE_MODEL_VERSIONS[family]
    return version + "_v" if v_prediction and family != "sdxl" else version


def kohya_metadata(
    *,
    output_name: str,
    base_model: str,
    rank: int,
    alpha: float,
    steps: int,
    family: str = "sd1",
    v_prediction: bool = False,
    lora_targets: str | None = None,
    conv_rank: int | None = None,
    conv_alpha: float | None = None,
    max_train_steps: int | None = None,
    resolution: int | tuple[int, int] | None = None,
    num_train_images: int | None = None,
    tag_frequency: Mapping[str, Mapping[str, int]] | None = None,
    dataset_dirs: Mapping[str, Mapping[str, int]] | None = None,
    learning_rate: float | None = None,
    unet_lr: float | None = None,
    text_encoder_lr: float | None = None,
    lr_scheduler: str | None = None,
    optimizer: str | None = None,
    noise_offset: float | None = None,
    min_snr_gamma: float | None = None,
    caption_dropout_rate: float | None = None,
    shuffle_caption: bool | None = None,
    keep_tokens: int | None = None,
    enable_bucket: bool | None = None,
    min_bucket_reso: int | None = None,
    max_bucket_reso: int | None = None,
    bucket_info: Mapping[str, Any] | None = None,
    mixed_precision: str | None = None,
    seed: int | None = None,
    training_comment: str | None = None,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """sd-scripts' `ss_*` metadata, every value a string, plus ours (`extra`).

    Arguments left at None are not written. The shapes follow sd-scripts, so
    A1111, ComfyUI and Civitai-style tools read them: `resolution` (an int for
    a square, or (width, height)) becomes "(512, 512)"; `tag_frequency` is
    {dataset_dir: {tag: count}} and `dataset_dirs` {dataset_dir: {"n_repeats":
    r, "img_count": n}}, both written as JSON, like `bucket_info`; booleans
    are "True"/"False"; floats their repr. `ss_network_args` holds conv_dim
    and conv_alpha (as strings, as sd-scripts' command line gives them) when
    the network has LoCon modules, and is left out otherwise, as sd-scripts
    does without network args. `family` is ours too ("sd1", "sd2", "sdxl").
    """
    meta = {
        "ss_network_module": "networks.lora",
        "ss_network_dim": str(rank),
        "ss_network_alpha": _number(alpha),
        "ss_base_model_version": kohya_base_model_version(family, v_prediction),
        "ss_v2": str(family == "sd2"),
        "ss_sd_model_name": base_model,
        "ss_output_name": output_name,
        "ss_steps": str(steps),
        "ss_max_train_steps": str(max_train_steps or steps),
        "family": family,
    }
    if conv_rank is not None:
        args = {"conv_dim": str(conv_rank), "conv_alpha": _number(conv_alpha or 1.0)}
        meta["ss_network_args"] = json.dumps(args)
    if isinstance(resolution, int):
        resolution = (resolution, resolution)
    optional = {
        "lora_targets": lora_targets,
        "ss_resolution": str(tuple(resolution)) if resolution else None,
        "ss_num_train_images": num_train_images,
        "ss_tag_frequency": tag_frequency,
        "ss_dataset_dirs": dataset_dirs,
        "ss_learning_rate": learning_rate,
        "ss_unet_lr": unet_lr,
        "ss_text_encoder_lr": text_encoder_lr,
        "ss_lr_scheduler": lr_scheduler,
        "ss_optimizer": optimizer,
        "ss_noise_offset": noise_offset,
        "ss_min_snr_gamma": min_snr_gamma,
        "ss_caption_dropout_rate": caption_dropout_rate,
        "ss_shuffle_caption": shuffle_caption,
        "ss_keep_tokens": keep_tokens,
        "ss_enable_bucket": enable_bucket,
        "ss_min_bucket_reso": min_bucket_reso,
        "ss_max_bucket_reso": max_bucket_reso,
        "ss_bucket_info": bucket_info,
        "ss_mixed_precision": mixed_precision,
        "ss_seed": seed,
        "ss_training_comment": training_comment,
    }
    meta.update({k: _text(v) for k, v in optional.items() if v is not None})
    meta.update(extra or {})
    return meta


def _text(value: Any) -> str:
    """A metadata value as sd-scripts writes it: JSON for mappings, repr for floats."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return _number(value)
    if isinstance(value, Mapping):
        return json.dumps(value, sort_keys=True)
    return str(value)


def _number(value: float) -> str:
    """32.0 -> "32.0", 0.5 -> "0.5": a float's repr, the way kohya writes it."""
    return repr(float(value))


# What a LoRA file says about its family: sd-scripts' ss_base_model_version
# ("sd_v1", "sd_v2_v", "sdxl_base_v1-0", ...) and the modelspec architecture
# ("stable-diffusion-xl-v1-base/lora", ...), by prefix, SDXL first (its names
# start like the others').
_VERSION_PREFIXES = (("sdxl", "sdxl"), ("sd_v2", "sd2"), ("sd_v1", "sd1"))
_ARCHITECTURE_PREFIXES = (
    ("stable-diffusion-xl", "sdxl"),
    ("stable-diffusion-v2", "sd2"),
    ("stable-diffusion-v1", "sd1"),
)
# Widths only one full-size family has: the text encoder's (SD 1.x 768,
# SD 2.x 1024, SDXL's second 1280) and the UNet's cross-attention input (768,
# 1024, 2048). A tiny test model's widths say nothing.
_TEXT_WIDTHS = {768: "sd1", 1024: "sd2", 1280: "sdxl"}
_CONTEXT_WIDTHS = {768: "sd1", 1024: "sd2", 2048: "sdxl"}


def lora_family_of(
    metadata: Mapping[str, str], shapes: Mapping[str, Sequence[int]]
) -> str | None:
    """The family ("sd1", "sd2", "sdxl") a LoRA was trained for, None when it
    does not tell: from our `family` metadata, `ss_base_model_version`, the
    modelspec architecture or `ss_v2`, then its keys (SDXL's two text encoders)
    and the width of a text-encoder or cross-attention weight. Takes what a
    file's header holds, so the web process can ask without torch."""
    ours = metadata.get("family", "").strip().lower()
    if ours in BASE_MODEL_VERSIONS:
        return ours
    version = metadata.get("ss_base_model_version", "").strip().lower()
    architecture = metadata.get("modelspec.architecture", "").strip().lower()
    for text, prefixes in (
        (version, _VERSION_PREFIXES),
        (architecture, _ARCHITECTURE_PREFIXES),
    ):
        for prefix, family in prefixes:
            if text.startswith(prefix):
                return family
    if metadata.get("ss_v2", "").strip().lower() == "true":
        return "sd2"
    return _family_from_shapes(shapes)


def _family_from_shapes(shapes: Mapping[str, Sequence[int]]) -> str | None:
    if any(k.startswith(("lora_te1_", "lora_te2_", "text_encoder_2.")) for k in shapes):
        return "sdxl"
    for key, shape in shapes.items():
        if len(shape) != 2 or not key.endswith(("lora_down.weight", "lora_A.weight")):
            continue
        if key.startswith(("lora_te_", "text_encoder.")) and "q_proj" in key:
            family = _TEXT_WIDTHS.get(shape[1])
        elif "attn2" in key and ("to_k" in key or "to_v" in key):
            family = _CONTEXT_WIDTHS.get(shape[1])
        else:
            continue
        if family is not None:
            return family
    return None
