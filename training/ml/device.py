"""Which accelerator to run on, and in which precision."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

DEVICE_CHOICES = ("auto", "cuda", "mps", "cpu")


def pick_device(requested: str = "auto") -> str:
    """ "cuda", "mps" or "cpu"; "auto" takes the best one present.

    Asking for an accelerator that is absent raises ValueError rather than
    silently training for hours on the CPU. "cuda:1" style indices pass through.
    """
    import torch

    kind = requested.split(":", 1)[0]
    if kind not in DEVICE_CHOICES:
        raise ValueError(f"Unknown device {requested!r}; use one of {DEVICE_CHOICES}.")
    mps = getattr(torch.backends, "mps", None)
    available = {
        "cuda": torch.cuda.is_available(),
        "mps": bool(mps and mps.is_available()),
        "cpu": True,
    }
    if kind == "auto":
        return next(name for name, ok in available.items() if ok)
    if not available[kind]:
        raise ValueError(f"Device {requested!r} was asked for but is not available.")
    return requested


def pick_dtype(device: str, mixed_precision: str = "no") -> tuple[torch.dtype, str]:
    """The autocast dtype for `mixed_precision` on `device`, and a note when it differs.

    Mixed precision is only used on CUDA: CPU autocast is slow and lossy for
    convolutions, and MPS support varies by macOS version, so both fall back to
    float32. bf16 on a CUDA card without bf16 support falls back to fp16.
    """
    import torch

    if mixed_precision == "no":
        return torch.float32, ""
    if mixed_precision not in ("fp16", "bf16"):
        raise ValueError(
            f"mixed_precision must be 'no', 'fp16' or 'bf16', not {mixed_precision!r}."
        )
    if not device.startswith("cuda"):
        return torch.float32, (
            f"{mixed_precision} mixed precision is CUDA-only; "
            f"running in float32 on {device}."
        )
    if mixed_precision == "bf16" and not torch.cuda.is_bf16_supported():
        return torch.float16, "This GPU has no bf16 support; using fp16 instead."
    dtype = torch.bfloat16 if mixed_precision == "bf16" else torch.float16
    return dtype, ""
