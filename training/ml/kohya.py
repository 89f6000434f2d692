"""LoRA files in kohya-ss format, the one A1111, ComfyUI and diffusers all read.

A module `down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_out.0` of the
UNet becomes the prefix
`lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_out_0`, with
three tensors under it: `.lora_down.weight` (peft's lora_A, rank x in),
`.lora_up.weight` (lora_B, out x rank) and `.alpha` (a 0-d tensor). The
effective scale is alpha / rank, as in peft.
"""

from __future__ import annotations

import json
import os
import struct
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

PREFIXES = ("lora_unet_", "lora_te_")
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
    return prefix + module.replace(".", "_") + _PEFT_PARTS[part]


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
                f"{key}: expected lora_unet_/lora_te_<module>{'|'.join(SUFFIXES)}"
            )
            continue
        modules.setdefault(key[: -len(suffix)], {})[suffix] = tensor
    for module, parts in sorted(modules.items()):
        missing = [s for s in SUFFIXES if s not in parts]
        if missing:
            problems.append(f"{module}: missing {', '.join(missing)}")
            continue
        down, up, alpha = (parts[s] for s in SUFFIXES)
        if down.ndim < 2 or up.ndim < 2 or down.shape[0] != up.shape[1]:
            problems.append(
                f"{module}: lora_down {tuple(down.shape)} and lora_up "
                f"{tuple(up.shape)} disagree on the rank"
            )
        if alpha.numel() != 1:
            problems.append(
                f"{module}: alpha should be a scalar, has shape {tuple(alpha.shape)}"
            )
    return problems


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


def kohya_metadata(
    *,
    output_name: str,
    base_model: str,
    rank: int,
    alpha: float,
    steps: int,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The `ss_*` keys kohya-ss writes that UIs show, plus our own fields (`extra`)."""
    meta = {
        "ss_network_module": "networks.lora",
        "ss_network_dim": str(rank),
        "ss_network_alpha": _number(alpha),
        "ss_base_model_version": "sd_v1",
        "ss_v2": "False",
        "ss_sd_model_name": base_model,
        "ss_output_name": output_name,
        "ss_steps": str(steps),
        "ss_max_train_steps": str(steps),
        "ss_network_args": json.dumps({"target": "unet attention projections"}),
    }
    meta.update(extra or {})
    return meta


def _number(value: float) -> str:
    """32.0 -> "32.0", 0.5 -> "0.5": a float's repr, the way kohya writes it."""
    return repr(float(value))
