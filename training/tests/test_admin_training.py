"""Training in the admin: start a run from albums, watch it, start/cancel,
download; import, edit, download and delete LoRAs; the staff run page."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile

from imagineer_project.testing import admin_listed, make_image_bytes, query_count
from training.models import Lora, TrainingRun
from training.registry import lora_import
from training.tests.builders import (
    TINY_CONFIG,
    make_tiny_run,
    make_training_album,
)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("train_env")]

RUNS = "/admin/training/trainingrun/"
LORAS = "/admin/training/lora/"


def flipped_lora(trained_lora: Any) -> bytes:
    """Another valid LoRA file: the trained one with its up weights negated."""
    from safetensors.torch import load_file, save

    state = load_file(trained_lora.lora_path)
    flipped = {k: -v if ".lora_up." in k else v for k, v in state.items()}
    return save(flipped, metadata=trained_lora.metadata)


def add_form(albums: list, **overrides: Any) -> dict[str, Any]:
    """The add form as a person fills it in: the albums, defaults elsewhere."""
    from django.conf import settings

    from training.config import config_defaults

    config = {**config_defaults(), **overrides.pop("config", {})}
    data = {
        "albums": [a.pk for a in albums],
        "base_model": overrides.pop("base_model", settings.TRAINING_BASE_MODEL),
        "start": "on",
        **{k: str(v).lower() if isinstance(v, bool) else v for k, v in config.items()},
        **overrides,
    }
    from training.config import FIELDS

    checkboxes = [spec.name for spec in FIELDS if spec.kind is bool]
    for name in (*checkboxes, "start"):
        if data.get(name) in ("false", False, None):
            data.pop(name, None)  # an unticked checkbox is absent
    return data


def test_two_albums_train_from_the_admin_and_the_lora_downloads(
    admin_client: Any, settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    """The issue's "done when": choose two labeled albums, start, watch, download."""
    settings.TRAINING_RANGES = {
        **settings.TRAINING_RANGES,
        "steps": (1, 5000),
        "resolution": (64, 1024),
    }
    tarot = make_training_album(3, name="Tarot")
    zodiac = make_training_album(3, name="Zodiac", trigger_word="", first_seed=2000)
    page = admin_client.get(f"{RUNS}add/")
    assert page.status_code == 200
    assert "Tarot — 3/3 captioned, ready" in page.text
    assert "Optimizer steps to train. 1–5000; default 1500." in page.text

    form = add_form(
        [tarot, zodiac],
        name="Cards",
        config={**TINY_CONFIG, "steps": 3, "checkpoint_every": 0},
    )
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(f"{RUNS}add/", form)
    run = TrainingRun.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"{RUNS}{run.pk}/change/"
    run.refresh_from_db()
    assert run.status == "succeeded", run.error
    assert run.dataset.captioned_count == 6 and run.dataset.trigger_word == "zxq"

    page = admin_client.get(response["Location"])
    assert page.status_code == 200
    text = page.text
    assert '<polyline points="' in text and "at step 3 of 3" in text
    assert text.count("/thumbnail?size=256") == 3  # the samples
    assert "Download LoRA" in text and "http-equiv" not in text  # ended: no refresh
    lora = Lora.objects.get()
    download = admin_client.get(f"{LORAS}{lora.pk}/download/")
    assert download["Content-Disposition"] == 'attachment; filename="cards.safetensors"'
    stored = default_storage.open(lora.file.name).read()
    assert b"".join(download.streaming_content) == stored


def test_the_add_form_shows_config_errors_with_the_range(admin_client: Any) -> None:
    album = make_training_album()
    response = admin_client.post(
        f"{RUNS}add/", add_form([album], config={"steps": 6000, "rank": 64})
    )
    assert response.status_code == 200
    assert response.context["form"].errors == {
        "steps": ["steps must be between 500 and 5000 (got 6000)"],
        "rank": ["rank must be between 4 and 32 (got 64)"],
    }
    assert not TrainingRun.objects.exists()


def test_albums_that_cannot_train_are_refused_on_the_form(admin_client: Any) -> None:
    album = make_training_album(2)
    response = admin_client.post(f"{RUNS}add/", add_form([album]))
    assert response.status_code == 200
    assert "2 captioned" in response.context["form"].errors["albums"][0]
    assert not TrainingRun.objects.exists()


def test_a_run_created_without_starting_has_a_start_button(
    admin_client: Any, django_capture_on_commit_callbacks: Any
) -> None:
    album = make_training_album()
    admin_client.post(f"{RUNS}add/", add_form([album], start=None))
    run = TrainingRun.objects.get()
    assert run.enqueued_at is None
    page = admin_client.get(f"{RUNS}{run.pk}/change/")
    assert f"{RUNS}{run.pk}/start/" in page.text and ">Start</button>" in page.text
    assert 'http-equiv="refresh" content="5"' in page.text  # queued: refreshes
    with django_capture_on_commit_callbacks() as callbacks:
        response = admin_client.post(f"{RUNS}{run.pk}/start/")
    assert response.status_code == 302 and len(callbacks) == 1
    run.refresh_from_db()
    assert run.enqueued_at is not None
    page = admin_client.get(f"{RUNS}{run.pk}/change/")
    assert f"{RUNS}{run.pk}/start/" not in page.text
    again = admin_client.post(f"{RUNS}{run.pk}/start/", follow=True)
    assert "already queued" in again.text


def test_cancel_from_the_run_page_and_the_list(admin_client: Any) -> None:
    first, second = make_tiny_run(), make_tiny_run()
    response = admin_client.post(f"{RUNS}{first.pk}/cancel/", follow=True)
    assert "Cancelled before it started." in response.text
    response = admin_client.post(
        RUNS, {"action": "cancel_selected", "_selected_action": [second.pk]}
    )
    assert response.status_code == 302
    statuses = set(TrainingRun.objects.values_list("status", flat=True))
    assert statuses == {"cancelled"}
    page = admin_client.get(f"{RUNS}{first.pk}/change/")
    assert ">Resume</button>" in page.text


def test_the_run_page_shows_progress_curve_log_and_manifest(admin_client: Any) -> None:
    run = make_tiny_run()
    TrainingRun.objects.filter(pk=run.pk).update(
        status="running",
        progress_done=2,
        loss=0.1234,
        learning_rate=1e-3,
        eta_seconds=75,
        loss_curve=[[1, 0.5], [2, 0.1234]],
        log_tail="10:00:00 Encoding 6 images\n10:00:01 <b>step</b>",
        manifest={"seed": 0},
        manifest_sha256="ab" * 32,
    )
    text = admin_client.get(f"{RUNS}{run.pk}/change/").text
    assert '<progress max="100" value="50">' in text and "step 2 of 4" in text
    # Step 1 of 4 at the top (the highest loss), step 2 at the bottom.
    assert '<polyline points="174.0,28.0 320.0,192.0" class="line"/>' in text
    assert "1.00e-03" in text and "1m 15s" in text
    assert "&lt;b&gt;step&lt;/b&gt;" in text  # log lines are escaped
    assert "ab" * 32 in text and "Cancel run" in text


def test_run_changelist_search_filter_and_query_count(admin_client: Any) -> None:
    first = make_tiny_run()
    second = make_tiny_run(dataset=first.dataset)
    TrainingRun.objects.filter(pk=second.pk).update(status="succeeded", name="keep")
    assert admin_listed(admin_client.get(RUNS)) == [second.pk, first.pk]
    assert admin_listed(admin_client.get(f"{RUNS}?q=keep")) == [second.pk]
    assert admin_listed(admin_client.get(f"{RUNS}?status__exact=queued")) == [first.pk]
    few = query_count(admin_client, RUNS)
    for _ in range(3):
        make_tiny_run(dataset=first.dataset)
    assert query_count(admin_client, RUNS) == few


def test_the_staff_run_page(client: Any, admin_client: Any, user_client: Any) -> None:
    run = make_tiny_run()
    url = f"/training/runs/{run.pk}/"
    page = admin_client.get(url)
    assert page.status_code == 200
    assert "No training steps yet." in page.text and "Training manifest" in page.text
    assert client.get(url).status_code == 302  # to the login page
    assert user_client.get(url).status_code == 302
    assert admin_client.get("/training/runs/999/").status_code == 404


# --- LoRAs ---------------------------------------------------------------------------


def test_import_a_lora_from_the_admin(admin_client: Any, trained_lora: Any) -> None:
    data = Path(trained_lora.lora_path).read_bytes()
    response = admin_client.post(
        f"{LORAS}add/",
        {
            "file": SimpleUploadedFile("blocks.safetensors", data),
            "name": "Blocks",
            "trigger_words": "zxq, blocky",
            "default_weight": "0.6",
            "base_model": "",
        },
    )
    lora = Lora.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"{LORAS}{lora.pk}/change/"
    assert (lora.trigger_words, lora.default_weight) == (["zxq", "blocky"], 0.6)
    page = admin_client.get(response["Location"])
    assert "Imported" in page.text and f"{LORAS}{lora.pk}/download/" in page.text


def test_an_invalid_file_is_refused_on_the_import_form(admin_client: Any) -> None:
    response = admin_client.post(
        f"{LORAS}add/",
        {
            "file": SimpleUploadedFile("cat.safetensors", make_image_bytes("PNG")),
            "name": "Cat",
            "default_weight": "0.8",
        },
    )
    assert response.status_code == 200
    assert (
        response.context["form"].errors["file"][0].startswith("Not a .safetensors file")
    )
    assert not Lora.objects.exists()


def test_edit_search_filter_and_delete_loras(
    admin_client: Any, trained_lora: Any
) -> None:
    lora = lora_import(file=trained_lora.lora_path, name="Blocks")
    assert admin_listed(admin_client.get(f"{LORAS}?q=zxq")) == [lora.pk]
    assert admin_listed(admin_client.get(f"{LORAS}?origin=imported")) == [lora.pk]
    assert admin_listed(admin_client.get(f"{LORAS}?origin=trained")) == []
    response = admin_client.post(
        f"{LORAS}{lora.pk}/change/",
        {"name": "Blocks v2", "trigger_words": "zxq, cards", "default_weight": "1"},
    )
    assert response.status_code == 302
    lora.refresh_from_db()
    assert (lora.name, lora.trigger_words, lora.default_weight) == (
        "Blocks v2",
        ["zxq", "cards"],
        1.0,
    )
    few = query_count(admin_client, LORAS)
    lora_import(file=io.BytesIO(flipped_lora(trained_lora)), name="Flipped")
    assert query_count(admin_client, LORAS) == few
    key = lora.file.name
    response = admin_client.post(f"{LORAS}{lora.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert list(Lora.objects.values_list("name", flat=True)) == ["Flipped"]
    assert not default_storage.exists(key)
