"""SDXL through the same run, registry and recipe code as SD 1.5: a run on
the tiny SDXL pipeline trains and registers an SDXL LoRA (every checkpoint
too), and a generation job and a set run on that base with it render images
through the real task bodies."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from albums.models import Album
from training.generation.services import generation_job_create
from training.models import Lora, SetRun
from training.registry import lora_register_checkpoint
from training.sets.services import SetRequest, set_run_create
from training.sets.tasks import run_set
from training.tasks import run_training
from training.tests.builders import QUIET, make_tiny_run, run_job, small_request

pytestmark = [pytest.mark.django_db, QUIET]


@pytest.fixture
def sdxl_lora(
    settings: Any, tmp_path: Path, tiny_sdxl_base: Path, gen_env: Path
) -> Lora:
    """A LoRA trained here on the tiny SDXL base, which generation then uses."""
    settings.TRAINING_MIN_CAPTIONED = 3
    settings.TRAINING_WORK_DIR = tmp_path / "work"
    settings.TRAINING_DEVICE = "cpu"
    settings.TRAINING_BASE_MODEL = str(tiny_sdxl_base)
    settings.GENERATION_BASE_MODEL = str(tiny_sdxl_base)
    run = make_tiny_run(steps=2, checkpoint_every=1)
    run_training(run.pk)
    run.refresh_from_db()
    assert run.status == "succeeded", run.error
    return Lora.objects.get(source_run=run)


def test_an_sdxl_run_registers_sdxl_loras_for_its_final_step_and_checkpoints(
    sdxl_lora: Lora,
) -> None:
    assert (sdxl_lora.family, sdxl_lora.source_step) == ("sdxl", 2)
    assert any(key.startswith("ss_") for key in sdxl_lora.metadata)
    first = lora_register_checkpoint(run=sdxl_lora.source_run, step=1)
    assert (first.family, first.source_step, first.name) == ("sdxl", 1, "blocks step 1")
    assert first.sha256 != sdxl_lora.sha256


def test_an_sdxl_job_and_set_render_with_the_sdxl_lora(
    sdxl_lora: Lora, tiny_sdxl_base: Path
) -> None:
    job = generation_job_create(request=small_request(loras=[(sdxl_lora.pk, 1.0)]))
    job = run_job(job)
    assert job.status == "succeeded", job.error
    assert len(job.image_ids) == 1
    recipe = job.recipes.get().recipe
    assert [e["sha256"] for e in recipe["loras"]] == [sdxl_lora.sha256]

    request = SetRequest(
        template="zodiac",
        theme="Neon",
        album="Signs",
        seed=5,
        width=64,
        height=64,
        steps=2,
        loras=[(sdxl_lora.pk, 1.0)],
        slots=["leo"],
    )
    set_run = set_run_create(request=request)
    run_set(set_run.pk)
    set_run.refresh_from_db()
    assert set_run.status == SetRun.Status.SUCCEEDED, set_run.error
    assert Album.objects.get(name="Signs").images.count() == 1
