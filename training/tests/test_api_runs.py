"""/api/training/runs and /api/loras: create, watch, start, cancel, logs,
download; staff only."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from training.config import FIELDS_BY_NAME, SECTIONS
from training.models import Lora, TrainingRun
from training.registry import lora_import
from training.tests.builders import (
    make_dataset,
    make_tiny_run,
    make_training_album,
)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("train_env")]


def post(client: Any, url: str, body: dict | None = None) -> Any:
    return client.post(
        url, data=json.dumps(body or {}), content_type="application/json"
    )


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("get", "/api/training/runs"),
        ("get", "/api/training/runs/config"),
        ("post", "/api/training/runs"),
        ("get", "/api/training/runs/{run}"),
        ("get", "/api/training/runs/{run}/logs"),
        ("post", "/api/training/runs/{run}/start"),
        ("post", "/api/training/runs/{run}/cancel"),
        ("get", "/api/loras"),
        ("get", "/api/loras/{lora}"),
        ("get", "/api/loras/{lora}/download"),
    ],
)
def test_only_staff_see_runs_and_loras(
    call_as: Any, trained_lora: Any, method: str, url: str
) -> None:
    run = make_tiny_run()
    lora = lora_import(file=trained_lora.lora_path, name="Blocks")
    url = url.format(run=run.pk, lora=lora.pk)
    for kind, status in (("anonymous", 401), ("user", 403)):
        response = getattr(call_as(kind), method)(url)
        assert response.status_code == status, (kind, url)
        body = response.json()
        assert set(body) == {"error", "error_code", "trace_id", "timestamp", "details"}
        assert str(Path(run.base_model)) not in response.content.decode()


def test_creating_a_run_from_albums_answers_202_with_its_location(
    call_as: Any, settings: Any
) -> None:
    album = make_training_album()
    client = call_as("token")
    response = post(
        client,
        "/api/training/runs",
        {
            "albums": [album.slug],
            "name": "blocks v1",
            "config": {"steps": 600, "rank": 16},
            "start": False,
        },
    )
    assert response.status_code == 202, response.json()
    body = response.json()
    assert response["Location"] == f"/api/training/runs/{body['id']}"
    run = TrainingRun.objects.get()
    assert body == {
        "id": run.pk,
        "name": "blocks v1",
        "status": "queued",
        # The tiny model's local folder, shown by its name only.
        "base_model": Path(settings.TRAINING_BASE_MODEL).name,
        "dataset_id": run.dataset_id,
        "dataset": {
            "id": run.dataset_id,
            "name": "Blocks",
            "trigger_word": "zxq",
            "manifest_sha256": run.dataset.manifest_sha256,
            "captioned_count": 6,
        },
        "config": {**run.config, "steps": 600, "rank": 16},
        "manifest": {},
        "manifest_sha256": "",
        "progress_done": 0,
        "progress_total": 600,
        "percent": 0,
        "loss": None,
        "learning_rate": None,
        "images_per_second": None,
        "eta_seconds": None,
        "loss_curve": [],
        "last_checkpoint_step": 0,
        "message": "",
        "error": "",
        "attempts": 0,
        "cancel_requested": False,
        "can_start": True,
        "lora_id": None,
        "sample_album_id": None,
        "sample_image_ids": [],
        "created": body["created"],
        "enqueued_at": None,
        "started_at": None,
        "finished_at": None,
        "heartbeat_at": None,
    }
    assert run.config["learning_rate"] == 1e-4  # the rest are the defaults


def test_a_run_of_an_existing_dataset_starts_at_once(
    call_as: Any, django_capture_on_commit_callbacks: Any
) -> None:
    dataset = make_dataset()
    with django_capture_on_commit_callbacks() as callbacks:
        response = post(
            call_as("staff"),
            "/api/training/runs",
            {"dataset": dataset.pk, "config": {"steps": 500}},
        )
    assert response.status_code == 202
    assert response.json()["enqueued_at"] is not None
    assert len(callbacks) == 1


def test_a_bad_config_is_422_naming_the_field_and_range(call_as: Any) -> None:
    dataset = make_dataset()
    response = post(
        call_as("token"),
        "/api/training/runs",
        {"dataset": dataset.pk, "config": {"steps": 10, "rank": 2}},
    )
    assert response.status_code == 422
    body = response.json()
    assert body["error"] == (
        "steps: steps must be between 500 and 5000 (got 10); "
        "rank: rank must be between 4 and 32 (got 2)"
    )
    assert body["error_code"] == "config_invalid"
    assert body["details"] == {
        "errors": {
            "steps": "steps must be between 500 and 5000 (got 10)",
            "rank": "rank must be between 4 and 32 (got 2)",
        }
    }
    assert not TrainingRun.objects.exists()


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"albums": ["blocks"], "dataset": 1},
        {"dataset": 1, "config": {"epochs": 3}},
        {"dataset": 1, "config": {"steps": "many"}},
    ],
)
def test_malformed_requests_are_422(call_as: Any, body: dict) -> None:
    response = post(call_as("token"), "/api/training/runs", body)
    assert response.status_code == 422
    assert response.json()["error"] == "The request is not valid."


def test_albums_with_too_few_captions_are_422(call_as: Any) -> None:
    album = make_training_album(2)
    response = post(call_as("token"), "/api/training/runs", {"albums": [album.pk]})
    assert response.status_code == 422
    assert response.json()["error_code"] == "dataset_invalid"
    assert "2 captioned" in response.json()["error"]


def test_unknown_albums_and_datasets_are_404(call_as: Any) -> None:
    client = call_as("token")
    assert post(client, "/api/training/runs", {"albums": ["nope"]}).status_code == 404
    assert post(client, "/api/training/runs", {"dataset": 999}).status_code == 404
    assert client.get("/api/training/runs/999").status_code == 404


def test_list_filters_by_status_and_dataset(call_as: Any) -> None:
    first = make_tiny_run()
    second = make_tiny_run(dataset=first.dataset)
    TrainingRun.objects.filter(pk=second.pk).update(status="succeeded")
    client = call_as("token")
    listed = client.get("/api/training/runs").json()
    assert [r["id"] for r in listed["items"]] == [second.pk, first.pk]
    assert listed["next_cursor"] is None
    succeeded = client.get("/api/training/runs?status=succeeded").json()
    assert [r["id"] for r in succeeded["items"]] == [second.pk]
    other = client.get(f"/api/training/runs?dataset={first.dataset_id + 1}").json()
    assert other["items"] == []
    assert client.get("/api/training/runs?status=bogus").status_code == 422


def test_start_then_cancel_then_resume(
    call_as: Any, django_capture_on_commit_callbacks: Any
) -> None:
    run = make_tiny_run()
    client = call_as("token")
    url = f"/api/training/runs/{run.pk}"
    with django_capture_on_commit_callbacks() as callbacks:
        started = post(client, f"{url}/start")
    assert started.status_code == 202 and started["Location"] == url
    assert started.json()["can_start"] is False and len(callbacks) == 1
    again = post(client, f"{url}/start")
    assert again.status_code == 409
    assert "already queued" in again.json()["error"]

    cancelled = post(client, f"{url}/cancel")
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled"
    ended = post(client, f"{url}/cancel")
    assert ended.status_code == 409
    assert ended.json()["error"] == (
        f"Training run {run.pk} already ended (cancelled)."
    )
    resumed = post(client, f"{url}/start")
    assert resumed.status_code == 202
    assert resumed.json()["status"] == "queued"


def test_logs_and_the_manifest_of_a_run(call_as: Any) -> None:
    run = make_tiny_run()
    TrainingRun.objects.filter(pk=run.pk).update(
        log_tail="10:00:00 one\n10:00:01 two",
        manifest={"seed": 0},
        manifest_sha256="ab" * 32,
        loss_curve=[[1, 0.5], [2, 0.25]],
    )
    client = call_as("token")
    assert client.get(f"/api/training/runs/{run.pk}/logs").json() == {
        "id": run.pk,
        "status": "queued",
        "lines": ["10:00:00 one", "10:00:01 two"],
    }
    detail = client.get(f"/api/training/runs/{run.pk}").json()
    assert (detail["manifest"], detail["manifest_sha256"]) == ({"seed": 0}, "ab" * 32)
    assert detail["loss_curve"] == [[1, 0.5], [2, 0.25]]


def test_config_fields_list_defaults_and_ranges(call_as: Any) -> None:
    fields = call_as("token").get("/api/training/runs/config").json()
    assert fields[0] == {
        "name": "steps",
        "type": "int",
        "section": "Basics",
        "default": 1500,
        "minimum": 500,
        "maximum": 5000,
        "choices": [],
        "optimizer_ranges": {},
        "help": "Optimizer steps to train.",
        "kohya": "max_train_steps",
    }
    by_name = {f["name"]: f for f in fields}
    assert by_name["mixed_precision"]["choices"] == ["no", "fp16", "bf16"]
    # Every option, each in a section, with its choices or range.
    assert set(by_name) == set(FIELDS_BY_NAME)
    assert {f["section"] for f in fields} == set(SECTIONS)
    assert by_name["optimizer"]["choices"] == ["adamw", "adamw8bit", "prodigy"]
    assert by_name["lr_scheduler"]["default"] == "constant_with_warmup"
    assert (
        by_name["min_snr_gamma"]["minimum"],
        by_name["min_snr_gamma"]["maximum"],
    ) == (0, 20)
    assert by_name["learning_rate"]["optimizer_ranges"] == {"prodigy": [0.1, 2.0]}
    assert by_name["validation_split"]["maximum"] == 0.5
    assert by_name["reg_album"]["default"] == 0
    numeric = [f for f in fields if f["type"] in ("int", "float")]
    unbounded = {f["name"] for f in numeric if f["minimum"] is None}
    assert unbounded == {"reg_album"}  # an album id


def test_the_api_config_schema_takes_every_config_field() -> None:
    from training.schemas import TrainingConfigIn

    assert set(TrainingConfigIn.model_fields) == set(FIELDS_BY_NAME)


# --- LoRAs ---------------------------------------------------------------------------


def test_loras_list_detail_and_download(call_as: Any, trained_lora: Any) -> None:
    lora = lora_import(file=trained_lora.lora_path, name="Blocks v1")
    client = call_as("token")
    listed = client.get("/api/loras").json()
    expected = {
        "id": lora.pk,
        "name": "Blocks v1",
        "trigger_words": ["zxq"],
        "default_weight": 0.8,
        "base_model": lora.base_model,
        "rank": 4,
        "alpha": 4.0,
        "family": "sd1",  # from the file's metadata
        "size": lora.size,
        "sha256": lora.sha256,
        "source_run_id": None,
        "source_step": None,
        "sample_album_id": None,
        "download_url": f"/api/loras/{lora.pk}/download",
        "created": listed["items"][0]["created"],
    }
    assert listed == {"items": [expected], "next_cursor": None}
    assert client.get("/api/loras?q=BLOCKS").json()["items"][0]["id"] == lora.pk
    assert client.get("/api/loras?q=other").json()["items"] == []
    detail = client.get(f"/api/loras/{lora.pk}").json()
    # The file's metadata, the base model named rather than located.
    named = {"base_model": "tiny-sd", "ss_sd_model_name": "tiny-sd"}
    assert detail == {**expected, "metadata": {**lora.metadata, **named}}
    assert lora.file.name not in json.dumps(detail)  # no storage keys

    download = client.get(f"/api/loras/{lora.pk}/download")
    assert download.status_code == 200
    assert download["Content-Type"] == "application/octet-stream"
    assert download["Content-Disposition"] == (
        'attachment; filename="blocks-v1.safetensors"'
    )
    assert (
        b"".join(download.streaming_content)
        == Path(trained_lora.lora_path).read_bytes()
    )
    assert client.get("/api/loras/999").status_code == 404
    assert Lora.objects.count() == 1
