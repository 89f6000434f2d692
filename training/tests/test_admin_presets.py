"""Training presets, time estimates and ranges on the admin's "Start a training
run" page."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from training.config import config_defaults
from training.estimates import (
    StepTimer,
    duration_text,
    step_timing_record,
    training_estimate,
)
from training.ml.config import StepReport
from training.models import StepTiming, TrainingRun
from training.presets import preset_config
from training.tests.builders import QUIET, make_training_album
from training.tests.test_admin_training import RUNS, add_form

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("train_env")]


def measured(base_model: Path, **overrides: Any) -> StepTiming:
    """0.5 s a step at 64 px, one image a step, 3 s to load: the tiny model here."""
    options = {
        "base_model": str(base_model),
        "device": "cpu",
        "resolution": 64,
        "images_per_step": 1,
        "seconds_per_step": 0.5,
        "load_seconds": 3.0,
        **overrides,
    }
    return step_timing_record(**options)


def report(step: int, elapsed: float, total: int = 20) -> StepReport:
    return StepReport(step, total, 0.1, 1e-3, 1.0, 0.0, elapsed)


def test_the_page_offers_presets_with_no_made_up_estimate(admin_client: Any) -> None:
    page = admin_client.get(f"{RUNS}add/")
    text = page.text
    for label in ("Smoke test", "Standard", "High quality", "Prodigy", "SDXL"):
        assert label in text
    assert text.count("not measured on this device yet: the first run measures it") == 5
    assert page.context["form"]["preset"].value() == "standard"


def test_presets_show_the_time_scaled_from_the_measured_step(
    admin_client: Any, train_env: Path
) -> None:
    measured(train_env)
    rows = {
        row["preset"].key: row
        for row in admin_client.get(f"{RUNS}add/").context["presets"]
    }
    # 3 s + 20 steps × 0.5 s.
    assert rows["smoke"]["estimate"].text == "about 15 s"
    # 512² px × 4 images a step is 256 times the measured work: 128 s a step.
    assert rows["standard"]["estimate"].seconds == pytest.approx(3 + 1500 * 128)
    assert rows["standard"]["estimate"].text == "about 53 h 20 min"
    assert (
        rows["high"]["config"]["rank"] == 16 and rows["high"]["config"]["steps"] == 3000
    )


def test_the_estimate_endpoint_follows_the_fields(
    admin_client: Any, train_env: Path
) -> None:
    measured(train_env)
    query = {"base_model": str(train_env), "steps": 200, "resolution": 64}
    response = admin_client.get(
        f"{RUNS}estimate/", {**query, "batch_size": 1, "gradient_accumulation": 1}
    )
    assert response.json() == {"seconds": 103.0, "text": "about 2 min"}
    other = admin_client.get(f"{RUNS}estimate/", {**query, "base_model": "other/model"})
    assert other.json() == {
        "seconds": None,
        "text": "not measured on this device yet: the first run measures it",
    }


def test_the_estimate_follows_the_options_that_make_a_step_dearer(
    admin_client: Any, train_env: Path
) -> None:
    measured(train_env)
    query = {"base_model": str(train_env), "steps": 200, "resolution": 64}

    def seconds(**options: str) -> float:
        response = admin_client.get(f"{RUNS}estimate/", {**query, **options})
        return response.json()["seconds"]

    plain = seconds(train_text_encoder="", gradient_checkpointing="")
    with_te = seconds(train_text_encoder="on", gradient_checkpointing="")
    both = seconds(train_text_encoder="on", gradient_checkpointing="on")
    assert plain < with_te < both
    assert seconds(lora_targets="attention") < plain
    assert seconds(lora_targets="no such set") == plain  # ignored, not an error


def test_only_the_device_the_worker_uses_counts(settings: Any, train_env: Path) -> None:
    measured(train_env, device="cuda", seconds_per_step=0.01)
    config = preset_config("smoke")
    assert training_estimate(base_model=str(train_env), config=config).seconds is None
    settings.TRAINING_DEVICE = "auto"  # then the latest measured device
    assert training_estimate(base_model=str(train_env), config=config).seconds == (
        pytest.approx(3.2)
    )


def test_album_links_preselect_the_albums(admin_client: Any) -> None:
    tarot = make_training_album(3, name="Tarot")
    make_training_album(3, name="Zodiac", first_seed=2000)
    form = admin_client.get(f"{RUNS}add/?album={tarot.pk}").context["form"]
    assert form["albums"].value() == [str(tarot.pk)]


def test_the_smoke_preset_goes_below_the_minimum_with_a_warning(
    admin_client: Any,
) -> None:
    """Fields left at their defaults take the preset (as with JavaScript off);
    steps and resolution below the minimum warn rather than refuse."""
    album = make_training_album(3)
    data = add_form([album], preset="smoke")
    data.pop("start")
    response = admin_client.post(f"{RUNS}add/", data, follow=True)
    run = TrainingRun.objects.get()
    assert run.config == {**preset_config("smoke"), "mixed_precision": "bf16"}
    warnings = [
        str(m) for m in response.context["messages"] if m.level_tag == "warning"
    ]
    assert warnings == [
        "Warning: steps 20 is below the usual minimum 500: fine for a smoke test, "
        "too little for a useful LoRA.",
        "Warning: resolution 64 is below the usual minimum 256: fine for a smoke "
        "test, too little for a useful LoRA.",
    ]


def test_a_field_changed_from_its_default_beats_the_preset(admin_client: Any) -> None:
    album = make_training_album(3)
    data = add_form([album], preset="smoke", config={"steps": 40})
    data.pop("start")
    admin_client.post(f"{RUNS}add/", data)
    assert TrainingRun.objects.get().config["steps"] == 40


def test_above_the_maximum_is_still_refused(admin_client: Any) -> None:
    album = make_training_album(3)
    response = admin_client.post(
        f"{RUNS}add/", add_form([album], config={"resolution": 2048})
    )
    assert response.context["form"].errors == {
        "resolution": ["resolution must be between 256 and 1536 (got 2048)"]
    }


def test_the_step_timer_records_once_after_the_warm_up(train_env: Path) -> None:
    config = {**config_defaults(), "resolution": 64, "batch_size": 2}
    timer = StepTimer(base_model=str(train_env), device="cpu", config=config)
    timer.step(report(1, 2.0))  # the first step warms up: not timed
    timer.step(report(2, 2.5))
    for step in range(3, 10):
        timer.step(report(step, 2.5 + (step - 2) * 0.25))
    timing = StepTiming.objects.get()
    assert (timing.resolution, timing.images_per_step) == (64, 8)
    assert timing.seconds_per_step == pytest.approx(0.25)
    assert "/" not in timing.base_model or not timing.base_model.startswith("/")


def test_a_short_run_records_what_it_has(train_env: Path) -> None:
    timer = StepTimer(base_model=str(train_env), device="cpu", config=config_defaults())
    timer.step(report(1, 1.0, total=1))
    assert StepTiming.objects.get().seconds_per_step == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (12, "about 10 s"),
        (61, "about 1 min"),
        (3 * 3600, "about 3 h"),
        (5400, "about 1 h 30 min"),
    ],
)
def test_duration_text(seconds: float, text: str) -> None:
    assert duration_text(seconds) == text


@QUIET
def test_a_real_smoke_test_from_the_admin_form(
    admin_client: Any, django_capture_on_commit_callbacks: Any
) -> None:
    """The Smoke test preset trains the tiny model end to end (~20 s on a CPU)."""
    album = make_training_album(3)
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(f"{RUNS}add/", add_form([album], preset="smoke"))
    assert response.status_code == 302
    run = TrainingRun.objects.get()
    assert run.status == "succeeded", run.error
    assert run.progress_done == 20


def test_a_resumed_run_skips_its_own_first_step(train_env: Path) -> None:
    timer = StepTimer(base_model=str(train_env), device="cpu", config=config_defaults())
    timer.step(report(301, 9.0, total=400))  # warm-up after loading a checkpoint
    for step in range(302, 308):
        timer.step(report(step, 9.0 + (step - 301) * 0.5, total=400))
    assert StepTiming.objects.get().seconds_per_step == pytest.approx(0.5)
