"""`manage.py demo` end to end: sample site -> scrape -> Claude labels (the local
fake) -> dataset -> a few training steps -> generation, on the tiny model."""

from __future__ import annotations

from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command

from albums.models import Album
from labeling.models import LabelingJob
from training.models import DatasetVersion, GenerationJob, Lora, TrainingRun
from training.tests.builders import QUIET

pytestmark = [pytest.mark.django_db, QUIET]


def test_the_demo_runs_the_whole_pipeline(
    settings: Any, tmp_path: Path, tiny_base: Path, fake_anthropic: Any
) -> None:
    settings.TRAINING_WORK_DIR = tmp_path / "work"
    settings.TRAINING_DEVICE = settings.GENERATION_DEVICE = "cpu"
    # The heartbeat thread must not write during the test's open transaction.
    out = StringIO()
    call_command(
        "demo",
        f"--base-model={tiny_base}",
        "--train-steps=2",
        "--images=1",
        "--generate-steps=2",
        stdout=out,
        stderr=StringIO(),
    )

    album = Album.objects.get(name="Demo: shapes")
    assert album.images.count() == 24 and album.trigger_word == "shpz"
    assert LabelingJob.objects.get().status == "succeeded"  # the key was set
    dataset = DatasetVersion.objects.get()
    assert dataset.captioned_count == 24
    run = TrainingRun.objects.get()
    assert run.status == "succeeded" and run.progress_done == 2
    lora = Lora.objects.get(source_run=run)
    job = GenerationJob.objects.get()
    assert job.status == "succeeded" and len(job.image_ids) == 1
    assert job.loras[0]["sha256"] == lora.sha256 and job.album.name == "Demo: generated"
    text = out.getvalue()
    assert "[6/6] Generate with it" in text
    assert f"/generate/jobs/{job.pk}/" in text
    assert f"/images/{job.image_ids[0]}/" in text
    assert "admin-password.txt" in text and "make run" in text
