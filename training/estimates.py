"""How long a training run will take, from step times measured on this device.

A run measures its first few optimizer steps (and how long it took to load
the model) and keeps them as a StepTiming per base model, device and shape.
An estimate scales the nearest measurement of the same base model and device
by pixels × images per step and by the options' step cost (step_cost); with
none there is no number, only a note that the first run measures it.

Aspect-ratio buckets need no factor: every bucket's area is at most
resolution² and at least 0.8 of it (64 px steps), so an image costs about
what a square one does; an estimate errs by at most that much on the long
side.
A measurement is kept divided by its run's step cost (the time of a plain
step), so a run with other options scales from it.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.utils import timezone

from imagineer_project.lib.spoken import duration_spoken
from training.ml.config import TrainConfig
from training.models import StepTiming
from training.paths import base_model_name

logger = logging.getLogger(__name__)

# Timing starts at this process's second step (the first warms caches and
# allocators) and is recorded TIMED_STEPS steps later.
TIMED_FROM_STEP = 2
TIMED_STEPS = 5
NOT_MEASURED = "not measured on this device yet: the first run measures it"

# How much longer than a plain step (TrainConfig's defaults: the transformer
# LoRA set, frozen text encoder, AdamW, no gradient checkpointing) a step with
# an option takes. Where the figures come from:
# - gradient checkpointing: the UNet's forward is run again in the backward.
#   FLOPs counted (torch's FlopCounterMode) on full-size SD 1.5 at 512 px with
#   frozen weights: forward + backward = 2.15 forwards, 2.89 with
#   checkpointing.
# - LoRA modules: their FLOPs are under 2% of the layers they wrap (rank
#   against width), but every module adds kernels and autograd nodes. On the
#   tiny UNets (docs/benchmarks.md, CPU) the transformer set's extra modules
#   cost 9-18% over the attention set, so attention is taken as 10% cheaper;
#   LoCon's convs (+86 modules on SD 1.5's 192) are taken to cost 10% more.
#   Not yet measured on a GPU.
# - text-encoder LoRA: the encoder's forward and backward are 1.7% of the
#   UNet's FLOPs at the family's resolution (SD 1.5: 13 against 803 GFLOP at
#   512 px; SDXL: 111 against 6,761 at 1,024 px); its 72 LoRA modules (SD 1.5)
#   cost like the transformer set's 64 extra ones.
# Prodigy and AdamW 8-bit add nothing here: the optimizer updates the LoRA
# weights alone, a few million numbers elementwise, against the UNet's ~1.7
# TFLOP per image of forward and backward.
GRADIENT_CHECKPOINTING_COST = 2.89 / 2.15
LORA_TARGETS_COST = {"attention": 1 / 1.1, "transformer": 1.0, "transformer+conv": 1.1}
TEXT_ENCODER_COST = 1.1


@dataclass(frozen=True)
class Estimate:
    seconds: float | None  # None: nothing measured for this base model and device
    text: str  # "about 3 min", or why there is no number


def duration_text(seconds: float) -> str:
    """ "about 40 s", "about 3 min", "about 2 h 10 min": an estimate, rounded to
    5 s under a minute and to 10 min past an hour and a half."""
    if seconds < 60:
        seconds = max(5, round(seconds / 5) * 5)
    elif seconds >= 90 * 60:
        seconds = round(seconds / 600) * 600
    return f"about {duration_spoken(seconds)}"


def step_timing_record(
    *,
    base_model: str,
    device: str,
    resolution: int,
    images_per_step: int,
    seconds_per_step: float,
    load_seconds: float = 0.0,
) -> StepTiming:
    """Keep a measured step time (the latest for its shape replaces the last)."""
    timing, _ = StepTiming.objects.update_or_create(
        base_model=base_model_name(base_model)[:500],
        device=device.split(":", 1)[0][:50],
        resolution=resolution,
        images_per_step=images_per_step,
        defaults={
            "seconds_per_step": seconds_per_step,
            "load_seconds": max(0.0, load_seconds),
            "measured_at": timezone.now(),
        },
    )
    return timing


class StepTimer:
    """Fed every StepReport of a run; records the step time once, after
    TIMED_STEPS steps past the first (or at the last step of a shorter run).

    Made just before training starts, so the time to the first step, less
    the steps themselves, is the load time.
    """

    def __init__(self, *, base_model: str, device: str, config: dict[str, Any]):
        self.base_model, self.device, self.config = base_model, device, config
        self.made = time.monotonic()
        self.first: tuple[int, float] | None = None  # (step, elapsed) at warm-up
        self.done = False
        self.seen = 0

    def step(self, report: Any) -> None:
        if self.done:
            return
        self.seen += 1  # reports, not step numbers: a resumed run starts late
        if self.first is None:
            if self.seen >= TIMED_FROM_STEP or report.step == report.total_steps:
                self.first = (report.step, report.elapsed_seconds)
                self.load = time.monotonic() - self.made - report.elapsed_seconds
            if report.step != report.total_steps:
                return
        first_step, first_elapsed = self.first  # type: ignore[misc]
        timed = report.step - first_step
        if timed < TIMED_STEPS and report.step != report.total_steps:
            return
        if timed > 0:
            per_step = (report.elapsed_seconds - first_elapsed) / timed
        else:  # a run of one or two steps: all it has
            per_step = report.elapsed_seconds / max(1, report.step)
        self.done = True
        try:
            step_timing_record(
                base_model=self.base_model,
                device=self.device,
                resolution=int(self.config["resolution"]),
                images_per_step=_images_per_step(self.config),
                seconds_per_step=per_step / step_cost(self.config),
                load_seconds=self.load,
            )
        except Exception:  # an estimate is never worth failing a run for
            logger.exception("Could not record the step time")


def step_cost(config: dict[str, Any]) -> float:
    """How many plain steps of the same shape one step of `config` costs (1 for
    TrainConfig's defaults; the factors above). Options a config leaves out
    take TrainConfig's defaults."""
    targets = config.get("lora_targets", TrainConfig.lora_targets)
    cost = LORA_TARGETS_COST.get(targets, 1.0)
    if config.get("train_text_encoder"):
        cost *= TEXT_ENCODER_COST
    if config.get("gradient_checkpointing"):
        cost *= GRADIENT_CHECKPOINTING_COST
    return cost


def _images_per_step(config: dict[str, Any]) -> int:
    return int(config["batch_size"]) * int(config["gradient_accumulation"])


def _work(resolution: int, images: int) -> float:
    return float(resolution) ** 2 * images


def _device_rows(base_model: str) -> list[StepTiming]:
    """The base model's timings on the worker's device: TRAINING_DEVICE when
    it names one, else (auto) the device of its latest measurement."""
    # Served by the steptiming_one_per_shape index (base_model, device, ...).
    rows = list(
        StepTiming.objects.filter(base_model=base_model_name(base_model)).order_by(
            "-measured_at"
        )
    )
    device = settings.TRAINING_DEVICE.split(":", 1)[0]
    if device == "auto":
        device = rows[0].device if rows else ""
    return [row for row in rows if row.device == device]


def training_estimate(
    *, base_model: str, config: dict[str, Any], rows: list[StepTiming] | None = None
) -> Estimate:
    """How long `config` trains on `base_model` here, from the nearest measured
    shape (scaled by pixels × images per step and by step_cost) plus the
    measured load time."""
    rows = _device_rows(base_model) if rows is None else rows
    if not rows:
        return Estimate(None, NOT_MEASURED)
    wanted = _work(int(config["resolution"]), _images_per_step(config))
    nearest = min(
        rows,
        key=lambda r: abs(math.log(wanted / _work(r.resolution, r.images_per_step))),
    )
    per_step = (
        nearest.seconds_per_step
        * wanted
        / _work(nearest.resolution, nearest.images_per_step)
        * step_cost(config)
    )
    seconds = nearest.load_seconds + int(config["steps"]) * per_step
    return Estimate(seconds, duration_text(seconds))


def training_estimates(
    *, base_model: str, configs: dict[str, dict[str, Any]]
) -> dict[str, Estimate]:
    """training_estimate for several configs (presets) with one query."""
    rows = _device_rows(base_model)
    return {
        name: training_estimate(base_model=base_model, config=config, rows=rows)
        for name, config in configs.items()
    }
