"""Run configs: defaults and ranges from settings, clear errors, CLI warnings;
creating, starting and cancelling runs."""

from __future__ import annotations

from typing import Any

import pytest

from imagineer_project.runs import run_request_cancel
from training.config import (
    FIELDS,
    FIELDS_BY_NAME,
    ConfigInvalid,
    config_defaults,
    config_validate,
    field_help,
)
from training.datasets.services import DatasetInvalid
from training.models import TrainingRun
from training.runs import CURVE_POINTS, _Tracker, sample_prompts
from training.services import (
    RunNotStartable,
    training_run_can_start,
    training_run_create,
    training_run_create_from_albums,
    training_run_start,
)
from training.tests.builders import (
    make_dataset,
    make_tiny_run,
    make_training_album,
)


def test_defaults_come_from_settings(settings: Any) -> None:
    config, warnings = config_validate({})
    assert warnings == []
    assert config == {
        spec.name: settings.TRAINING_DEFAULTS[spec.name] for spec in FIELDS
    }
    assert {
        name: config[name]
        for name in ("steps", "rank", "learning_rate", "resolution", "mixed_precision")
    } == {
        "steps": 1500,
        "rank": 8,
        "learning_rate": 1e-4,
        "resolution": 512,
        "mixed_precision": "bf16",
    }
    # The new options' defaults: kohya's coverage, buckets on, AdamW, plain loss.
    assert {
        name: config[name]
        for name in (
            "lora_targets",
            "train_text_encoder",
            "bucketing",
            "optimizer",
            "lr_scheduler",
            "loss_type",
            "min_snr_gamma",
            "reg_album",
            "validation_split",
        )
    } == {
        "lora_targets": "transformer",
        "train_text_encoder": False,
        "bucketing": True,
        "optimizer": "adamw",
        "lr_scheduler": "constant_with_warmup",
        "loss_type": "l2",
        "min_snr_gamma": 0.0,
        "reg_album": 0,
        "validation_split": 0.0,
    }
    settings.TRAINING_DEFAULTS = {**settings.TRAINING_DEFAULTS, "rank": 16}
    assert config_defaults()["rank"] == 16


def test_every_error_names_the_field_and_its_allowed_range() -> None:
    with pytest.raises(ConfigInvalid) as raised:
        config_validate(
            {
                "steps": 10,
                "rank": 64,
                "learning_rate": "fast",
                "resolution": 500,
                "mixed_precision": "fp8",
                "random_flip": "yes",
                "seed": 1.5,
                "epochs": 3,
            }
        )
    errors = raised.value.errors
    assert (
        errors.pop("epochs") == f"unknown setting (known: {', '.join(FIELDS_BY_NAME)})"
    )
    assert errors == {
        "steps": "steps must be between 500 and 5000 (got 10)",
        "rank": "rank must be between 4 and 32 (got 64)",
        "learning_rate": "learning_rate must be a number (got 'fast')",
        "resolution": "resolution must be a positive multiple of 8",
        "random_flip": "random_flip must be true or false (got 'yes')",
        "mixed_precision": "mixed_precision must be one of no, fp16, bf16 (got 'fp8')",
        "seed": "seed must be a whole number (got 1.5)",
    }


def test_the_cli_may_go_below_the_minimum_steps_and_resolution_with_a_warning() -> None:
    config, warnings = config_validate(
        {"steps": 10, "resolution": 64, "rank": 4}, allow_below_minimum=True
    )
    assert (config["steps"], config["resolution"]) == (10, 64)
    assert warnings == [
        "steps 10 is below the usual minimum 500: fine for a smoke test, too "
        "little for a useful LoRA",
        "resolution 64 is below the usual minimum 256: fine for a smoke test, too "
        "little for a useful LoRA",
    ]
    with pytest.raises(ConfigInvalid, match="steps must be between 500 and 5000"):
        config_validate({"steps": 0}, allow_below_minimum=True)
    with pytest.raises(ConfigInvalid, match="rank must be between 4 and 32"):
        config_validate({"rank": 2}, allow_below_minimum=True)


def test_field_help_shows_the_range_and_default() -> None:
    assert field_help("steps") == "Optimizer steps to train. 500–5000; default 1500."
    precision = field_help("mixed_precision")
    assert precision.endswith("One of no, fp16, bf16; default bf16.")
    assert field_help("random_flip").endswith("Default on.")


# --- services -----------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.usefixtures("train_env")
def test_creating_a_run_fills_the_config_and_enqueues_on_commit(
    django_capture_on_commit_callbacks: Any, settings: Any
) -> None:
    dataset = make_dataset()
    with django_capture_on_commit_callbacks() as callbacks:
        run = training_run_create(dataset=dataset, config={"rank": 16})
    assert len(callbacks) == 1  # the gpu task, sent once the run is committed
    assert run.enqueued_at is not None
    assert run.status == "queued" and not training_run_can_start(run)
    assert run.config == {**config_defaults(), "rank": 16}
    assert (run.name, run.progress_total) == ("Blocks", 1500)
    assert run.base_model == settings.TRAINING_BASE_MODEL


@pytest.mark.django_db
@pytest.mark.usefixtures("train_env")
def test_a_bad_config_builds_no_dataset_and_too_few_captions_no_run() -> None:
    album = make_training_album(2)
    with pytest.raises(ConfigInvalid):
        training_run_create_from_albums(albums=[album], config={"steps": 1})
    with pytest.raises(DatasetInvalid, match="2 captioned"):
        training_run_create_from_albums(albums=[album])
    assert not TrainingRun.objects.exists()


@pytest.mark.django_db
@pytest.mark.usefixtures("train_env")
def test_start_hands_over_a_new_run_once_and_resumes_failed_or_cancelled_ones(
    django_capture_on_commit_callbacks: Any,
) -> None:
    run = make_tiny_run()
    assert training_run_can_start(run)
    with django_capture_on_commit_callbacks() as callbacks:
        training_run_start(run=run)
    assert len(callbacks) == 1 and run.enqueued_at is not None
    with pytest.raises(RunNotStartable, match="is queued and already queued"):
        training_run_start(run=run)

    TrainingRun.objects.filter(pk=run.pk).update(
        status="failed", error="boom", attempts=3
    )
    run.refresh_from_db()
    assert training_run_can_start(run)
    with django_capture_on_commit_callbacks() as callbacks:
        training_run_start(run=run)
    assert len(callbacks) == 1
    assert (run.status, run.error, run.attempts) == ("queued", "", 0)
    # It never wrote a checkpoint (or its work dir was purged): it starts over.
    assert run.message == (
        "Queued again; starts from the first step (no checkpoint is kept)"
    )

    TrainingRun.objects.filter(pk=run.pk).update(status="succeeded")
    run.refresh_from_db()
    with pytest.raises(RunNotStartable, match="is succeeded"):
        training_run_start(run=run)


@pytest.mark.django_db
@pytest.mark.usefixtures("train_env")
def test_cancelling_a_run_that_never_started_ends_it_at_once() -> None:
    run = make_tiny_run()
    assert run_request_cancel(run)
    assert run.status == "cancelled"
    assert not run_request_cancel(run)


@pytest.mark.django_db
@pytest.mark.usefixtures("train_env")
def test_sample_prompts_are_the_trigger_word_and_two_captions() -> None:
    assert sample_prompts(make_dataset()) == [
        "zxq",
        "zxq, a blocky picture number 0",
        "zxq, a blocky picture number 1",
    ]
    other = make_dataset(name="Plain", trigger_word="")
    assert sample_prompts(other) == [
        "a blocky picture number 0",
        "a blocky picture number 1",
    ]


def test_the_loss_curve_keeps_at_most_500_evenly_spaced_means() -> None:
    from training.ml.config import StepReport

    def report(step: int, total: int = 1201) -> StepReport:
        return StepReport(step, total, float(step), 1e-4, 1.0, 0.0, 0.0)

    tracker = _Tracker(TrainingRun(pk=1))
    tracker._save = lambda **fields: None  # no database here
    for step in range(1, 1202):
        tracker.step(report(step))
    steps = [p[0] for p in tracker.curve]
    assert len(steps) <= CURVE_POINTS + 1
    assert steps[:3] == [3, 6, 9] and steps[-1] == 1201
    assert tracker.curve[0] == [3, 2.0]  # the mean of steps 1-3
    # An attempt that resumes at step 601 drops the points after step 600.
    resumed = _Tracker(TrainingRun(pk=1, loss_curve=tracker.curve))
    resumed._save = lambda **fields: None
    resumed.step(report(601))
    assert [p[0] for p in resumed.curve][-2:] == [597, 600]
