"""What training owns in storage, as reconcile-storage sees it: LoRA files
and written dataset exports."""

from __future__ import annotations

import os
import time

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from imagineer_project.maintenance.runner import maintenance_run_now
from training.datasets.services import dataset_export_request
from training.models import Lora
from training.tests.builders import make_dataset

pytestmark = pytest.mark.django_db


def old(key: str, data: bytes = b"x" * 10) -> str:
    name = default_storage.save(key, ContentFile(data))
    then = time.time() - 48 * 3600
    os.utime(default_storage.path(name), (then, then))
    return name


def test_written_exports_and_loras_stay_strays_go_and_lost_loras_are_reported(
    django_capture_on_commit_callbacks, settings
) -> None:
    settings.TRAINING_MIN_CAPTIONED = 3
    with django_capture_on_commit_callbacks(execute=True):
        export = dataset_export_request(dataset=make_dataset(), layout="flat")
    export.refresh_from_db()
    assert export.file.startswith("exports/")
    lora = Lora.objects.create(
        name="kept", file=old("loras/aa.safetensors"), sha256="a" * 64
    )
    Lora.objects.create(name="lost", file="loras/bb.safetensors", sha256="b" * 64)
    stray_zip = old("exports/datasets/gone-flat-1.zip")
    stray_lora = old("loras/cc.safetensors")

    run = maintenance_run_now(
        task="reconcile-storage", dry_run=False, trigger="command"
    )

    assert run.status == "succeeded", run.error
    assert {item["name"] for item in run.report["removed"]} == {stray_zip, stray_lora}
    assert run.report["problems"] == [
        "loras/bb.safetensors: referenced by LoRAs (Lora.file), not in storage"
    ]
    assert default_storage.exists(export.file)
    assert default_storage.exists(lora.file.name)
    assert Lora.objects.filter(name="lost").exists()
