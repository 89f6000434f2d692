"""How long a training run will take, from step times measured on this device.

A run measures its first few optimizer steps (and how long it took to load
the model) and keeps them as a StepTiming per base model, device and shape.
An estimate scales the nearest measurement of the same base model and device
by pixels × images per step; with none there is no number, only a note that
the first run measures it.
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
from training.models import StepTiming
from training.paths import base_model_name

logger = logging.getLogger(__name__)

# Timing starts at this process's second step (the first warms caches and
# allocators) and is recorded TIMED_STEPS steps later.
TIMED_FROM_STEP = 2
TIMED_STEPS = 5
NOT_MEASURED = "not measured on this device yet: the first run measures it"


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
                seconds_per_step=per_step,
                load_seconds=self.load,
            )
        except Exception:  # an estimate is never worth failing a run for
            logger.exception("Could not record the step time")


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
    shape (scaled by pixels × images per step) plus the measured load time."""
    rows = _device_rows(base_model) if rows is None else rows
    if not rows:
        return Estimate(None, NOT_MEASURED)
    wanted = _work(int(config["resolution"]), _images_per_step(config))
    nearest = min(
        rows,
        key=lambda r: abs(math.log(wanted / _work(r.resolution, r.images_per_step))),
    )
    per_step = nearest.seconds_per_step * (
        wanted / _work(nearest.resolution, nearest.images_per_step)
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
