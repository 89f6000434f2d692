"""The optimizer and learning-rate schedule of a LoRA run.

Optimizers: AdamW (torch), AdamW 8-bit (bitsandbytes, CUDA only: its states
live in 8-bit blocks on the GPU) and Prodigy (prodigyopt), which estimates the
step size itself, so its learning rate is a multiplier of that estimate and
1.0 is the usual value.

Schedules are diffusers' `get_scheduler` lambdas, counted in optimizer steps.
They are evaluated at the step number counted from 1 over `steps + 1`, so the
first step already learns (at 1/warmup of the rate, not at zero) and the last
step of a decaying schedule still does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from training.ml.config import InvalidTrainingInput, TrainConfig

if TYPE_CHECKING:
    import torch

WEIGHT_DECAY = 1e-2
# Prodigy's recommended settings for diffusion LoRAs (its README and the
# kohya/OneTrainer presets): decoupled weight decay, bias correction, and a
# warmup safeguard so the estimate does not jump while the rate is low.
PRODIGY_PRESET: dict[str, Any] = {
    "weight_decay": WEIGHT_DECAY,
    "decouple": True,
    "use_bias_correction": True,
    "safeguard_warmup": True,
    "d_coef": 1.0,
}


def build_optimizer(
    param_groups: Sequence[dict[str, Any]], config: TrainConfig, device: str
) -> torch.optim.Optimizer:
    """The optimizer `config.optimizer` names, over `param_groups` (each has an lr)."""
    groups = [dict(group) for group in param_groups]
    if config.optimizer == "adamw":
        import torch

        return torch.optim.AdamW(groups, weight_decay=WEIGHT_DECAY)
    if config.optimizer == "adamw8bit":
        return _adamw8bit(groups, device)
    if config.optimizer == "prodigy":
        from prodigyopt import Prodigy

        return Prodigy(groups, **PRODIGY_PRESET)
    raise InvalidTrainingInput(f"Unknown optimizer {config.optimizer!r}.")


def _adamw8bit(groups: list[dict[str, Any]], device: str) -> torch.optim.Optimizer:
    needs = (
        "AdamW 8-bit needs CUDA and bitsandbytes (pip install bitsandbytes); "
        "choose adamw or prodigy"
    )
    if not device.startswith("cuda"):
        raise InvalidTrainingInput(f"{needs}. This run is on {device}.")
    try:
        import bitsandbytes
    except ImportError as exc:
        raise InvalidTrainingInput(f"{needs}. bitsandbytes is not installed.") from exc
    return bitsandbytes.optim.AdamW8bit(groups, weight_decay=WEIGHT_DECAY)


def build_scheduler(
    optimizer: torch.optim.Optimizer, config: TrainConfig
) -> torch.optim.lr_scheduler.LRScheduler:
    """`config.lr_scheduler` over `config.steps` optimizer steps (see module doc)."""
    from diffusers.optimization import get_scheduler

    for group in optimizer.param_groups:
        group.setdefault("initial_lr", group["lr"])
    # last_epoch=0: the scheduler's first evaluation is at step 1, not 0.
    return get_scheduler(
        config.lr_scheduler,
        optimizer,
        num_warmup_steps=config.warmup_steps,
        num_training_steps=config.steps + 1,
        num_cycles=config.lr_cycles,
        last_epoch=0,
    )


def prodigy_note(config: TrainConfig) -> str:
    """A warning for the log when Prodigy gets an Adam-sized learning rate."""
    if config.optimizer != "prodigy":
        return ""
    rates = {"learning_rate": config.learning_rate}
    if config.train_text_encoder:
        rates["text_encoder_lr"] = config.text_encoder_lr
    small = [f"{name} {rate:g}" for name, rate in rates.items() if rate < 0.1]
    if not small:
        return ""
    return (
        "Prodigy treats learning rates as multipliers of its own estimate; "
        f"{' and '.join(small)} will barely train (1.0 is usual)."
    )
