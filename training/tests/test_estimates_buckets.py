"""Training time estimates follow the options that change a step's cost
(LoRA targets, text-encoder LoRA, gradient checkpointing) and not those that
do not (buckets, the optimizer)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from training.config import config_defaults
from training.estimates import StepTimer, step_timing_record, training_estimate
from training.ml.buckets import make_buckets
from training.ml.config import StepReport
from training.models import StepTiming

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("train_env")]


def config(**options: Any) -> dict[str, Any]:
    """The defaults at 64 px, one image a step, 100 steps."""
    base = {"resolution": 64, "batch_size": 1, "gradient_accumulation": 1}
    return {**config_defaults(), **base, "steps": 100, **options}


def seconds(base_model: Path, **options: Any) -> float:
    estimate = training_estimate(base_model=str(base_model), config=config(**options))
    assert estimate.seconds is not None
    return estimate.seconds


@pytest.fixture
def measured(train_env: Path) -> Path:
    """1 s a step of the defaults at 64 px, nothing to load."""
    step_timing_record(
        base_model=str(train_env),
        device="cpu",
        resolution=64,
        images_per_step=1,
        seconds_per_step=1.0,
    )
    return train_env


def test_the_defaults_take_the_measured_time(measured: Path) -> None:
    assert seconds(measured) == pytest.approx(100.0)


@pytest.mark.parametrize(
    "options",
    [
        {"train_text_encoder": True},
        {"gradient_checkpointing": True},
        {"lora_targets": "transformer+conv"},
    ],
)
def test_options_that_add_work_lengthen_the_estimate(
    measured: Path, options: dict[str, Any]
) -> None:
    assert seconds(measured, **options) > seconds(measured)


def test_the_attention_set_is_cheaper_than_the_transformer_set(measured: Path) -> None:
    assert seconds(measured, lora_targets="attention") < seconds(measured)


def test_options_add_up(measured: Path) -> None:
    both = seconds(measured, train_text_encoder=True, gradient_checkpointing=True)
    assert both > seconds(measured, train_text_encoder=True)
    assert both > seconds(measured, gradient_checkpointing=True)


@pytest.mark.parametrize(
    "options",
    [{"bucketing": False}, {"optimizer": "prodigy"}, {"optimizer": "adamw8bit"}],
)
def test_buckets_and_the_optimizer_leave_the_estimate(
    measured: Path, options: dict[str, Any]
) -> None:
    assert seconds(measured, **options) == pytest.approx(seconds(measured))


@pytest.mark.parametrize("resolution", [512, 768, 1024])
def test_buckets_cost_about_a_square_image(resolution: int) -> None:
    """Why buckets need no factor: every default bucket holds 80-100% of the
    pixels of the square the estimate scales by."""
    areas = [w * h / resolution**2 for w, h in make_buckets(resolution)]
    assert min(areas) >= 0.8 and max(areas) <= 1.0


def test_a_run_with_costly_options_is_estimated_from_what_it_measured(
    train_env: Path,
) -> None:
    """A run measured with the text encoder and gradient checkpointing gives
    its own time back for the same options, and less for the defaults."""
    costly = config(train_text_encoder=True, gradient_checkpointing=True)
    timer = StepTimer(base_model=str(train_env), device="cpu", config=costly)
    for step in range(1, 10):  # 2 s a step after the warm-up
        timer.step(StepReport(step, 100, 0.1, 1e-3, 1.0, 0.0, 2.0 * step))
    load = StepTiming.objects.get().load_seconds

    again = training_estimate(base_model=str(train_env), config=costly)
    assert again.seconds == pytest.approx(load + 100 * 2.0)
    assert seconds(train_env) < again.seconds
