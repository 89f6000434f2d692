"""No filesystem path reaches a caller, staff included: a finished run's
detail, logs and manifest, its LoRA's detail and file metadata, and the run's
page name the base model by name and its files relative to the work folder."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from training.ml.kohya import read_lora_metadata
from training.models import Lora
from training.registry import lora_import
from training.tasks import run_training
from training.tests.builders import make_tiny_run

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("train_env")]

# A path a response must not show: an absolute POSIX path of two parts or
# more, outside an URL ("/api/loras/1" is a link, not a path on disk).
ABSOLUTE = re.compile(r"(?<![\w.:/-])/(?!api/|media/|static/)[\w.-]+/[\w.-]+")


def leaks(text: str, folders: list[str]) -> list[str]:
    return [f for f in folders if f in text] + ABSOLUTE.findall(text)


def test_staff_responses_of_a_finished_run_show_no_filesystem_path(
    call_as: Any, staff_client: Any, settings: Any, train_env: Path, tmp_path_factory
) -> None:
    run = make_tiny_run()
    assert run_training(run.pk) == "succeeded"
    lora = Lora.objects.get(source_run=run)
    folders = [
        str(tmp_path_factory.getbasetemp()),  # the tiny base model, the work dir
        str(settings.TRAINING_WORK_DIR),
        str(settings.MEDIA_ROOT),
        str(settings.VAR_DIR),
        str(settings.BASE_DIR),
    ]
    token = call_as("token")
    found = {}
    for url in [
        f"/api/training/runs/{run.pk}",
        f"/api/training/runs/{run.pk}/logs",
        "/api/training/runs",
        f"/api/loras/{lora.pk}",
        "/api/loras",
    ]:
        response = token.get(url)
        assert response.status_code == 200, url
        found[url] = leaks(response.content.decode(), folders)
    page = staff_client.get(f"/training/runs/{run.pk}/")
    assert page.status_code == 200
    # The page links to other pages, so only the folders are looked for there.
    found["run page"] = [f for f in folders if f in page.content.decode()]
    download = token.get(f"/api/loras/{lora.pk}/download")
    lora_file = tmp_path_factory.mktemp("downloaded") / "lora.safetensors"
    lora_file.write_bytes(b"".join(download.streaming_content))
    found["LoRA file metadata"] = leaks(
        repr(read_lora_metadata(str(lora_file))), folders
    )
    assert {where: sorted(set(paths)) for where, paths in found.items()} == {
        where: [] for where in found
    }
    # What they say instead: the base model's name, files relative to the
    # run's work folder.
    detail = token.get(f"/api/training/runs/{run.pk}").json()
    assert detail["base_model"] == train_env.name
    assert detail["manifest"]["base_model"]["id"] == train_env.name
    lines = token.get(f"/api/training/runs/{run.pk}/logs").json()["lines"]
    assert any(f"run-{run.pk}/out/" in line for line in lines), lines
    assert read_lora_metadata(str(lora_file))["base_model"] == train_env.name


def test_a_lora_made_elsewhere_is_shown_with_its_base_model_named(
    call_as: Any, trained_lora: Any, tiny_base: Path
) -> None:
    # Trained by the ML code directly, its file's metadata names the path.
    assert read_lora_metadata(trained_lora.lora_path)["base_model"] == str(tiny_base)
    lora = lora_import(file=trained_lora.lora_path, name="from elsewhere")
    token = call_as("token")
    for url in (f"/api/loras/{lora.pk}", "/api/loras"):
        assert str(tiny_base) not in token.get(url).content.decode(), url
    body = token.get(f"/api/loras/{lora.pk}").json()
    assert body["base_model"] == tiny_base.name
    assert body["metadata"]["base_model"] == tiny_base.name
    assert body["metadata"]["ss_sd_model_name"] == tiny_base.name


def test_a_name_too_long_for_a_path_is_a_name_not_a_500(settings: Any) -> None:
    """Found by bin/apicheck: POST /api/generate with a 500-character
    base_model asked the disk whether such a folder exists, and the OS error
    (file name too long) ended the request in a 500."""
    from training.paths import base_model_location, base_model_name

    long_name = "0" * 500
    assert base_model_location(long_name) == long_name
    assert base_model_name(long_name) == long_name
