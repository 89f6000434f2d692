"""Every rate limit as a caller meets it: 429 in the error envelope with
Retry-After and RateLimit-* headers, the headers on successes too, costs per
file and byte, staff bypass, the admin's message, and commands unlimited."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.core.management import call_command

from albums.models import Image, UploadRun
from albums.tests.builders import make_album, make_image
from albums.tests.test_api_upload import BULK, UPLOAD, jpeg, post_files
from labeling.models import LabelingJob
from scraping.models import ScrapeJob
from scraping.tests.test_admin import ADD_FORM
from training.models import TrainingRun
from training.services import training_run_create
from training.tests.builders import make_dataset

HOUR = 3600


def post(client: Any, url: str, body: dict | None = None) -> Any:
    return client.post(url, json.dumps(body or {}), content_type="application/json")


def assert_refused(response: Any, limit: str, allowed: int, left: int = 0) -> None:
    assert response.status_code == 429
    retry_after = int(response["Retry-After"])
    assert 1 <= retry_after <= HOUR
    body = response.json()
    assert body["error_code"] == "rate_limited"
    assert body["details"] == {"limit": limit, "retry_after": retry_after}
    assert response["RateLimit-Limit"] == str(allowed)
    assert response["RateLimit-Remaining"] == str(left)
    assert 0 <= int(response["RateLimit-Reset"]) <= HOUR


def remaining(response: Any) -> int:
    return int(response["RateLimit-Remaining"])


@pytest.fixture
def train_settings(settings: Any, tmp_path: Any) -> None:
    """Enough to create runs; none of them runs here (no worker)."""
    settings.TRAINING_MIN_CAPTIONED = 3
    settings.TRAINING_WORK_DIR = tmp_path / "work"
    settings.TRAINING_BASE_MODEL = "tiny/base-model"


@pytest.fixture
def limits(settings: Any) -> Any:
    def set_limits(text: str) -> None:
        settings.RATE_LIMITS = text

    settings.RATE_LIMITS_STAFF_EXEMPT = []
    settings.GENERATION_RATE_LIMIT_EXEMPT_STAFF = False
    return set_limits


# --- uploads: per file and per byte ---------------------------------------------------


def test_a_three_file_upload_counts_three(call_as: Any, limits: Any) -> None:
    limits("upload_files=4/h")
    client = call_as("token")
    files = [(f"{n}.jpg", jpeg(seed=n)) for n in range(3)]
    first = post_files(client, UPLOAD, files, album_name="A")
    assert first.status_code == 201
    assert (first["RateLimit-Limit"], remaining(first)) == ("4", 1)
    refused = post_files(client, BULK, files, album_name="A")
    assert_refused(refused, "upload_files", 4, left=1)
    assert Image.objects.count() == 3 and not UploadRun.objects.exists()
    one = post_files(client, BULK, files[:1], album_name="A")
    assert one.status_code == 202 and remaining(one) == 0


def test_uploads_count_their_bytes(call_as: Any, limits: Any) -> None:
    data = jpeg()
    limits(f"upload_bytes={len(data) * 2 + 10}/h")
    client = call_as("token")
    assert (
        post_files(client, BULK, [("a.jpg", data)], album_name="A").status_code == 202
    )
    assert (
        post_files(client, BULK, [("b.jpg", data)], album_name="A").status_code == 202
    )
    refused = post_files(client, BULK, [("c.jpg", data)], album_name="A")
    assert_refused(refused, "upload_bytes", len(data) * 2 + 10, left=10)
    assert refused.json()["error"].startswith("Too many uploaded bytes")


# --- starts -----------------------------------------------------------------------


@pytest.mark.usefixtures("train_settings")
def test_training_starts_are_limited(call_as: Any, limits: Any) -> None:
    limits("train=2/h")
    client = call_as("token")
    dataset = make_dataset()
    made = post(client, "/api/training/runs", {"dataset": dataset.pk})
    assert made.status_code == 202 and remaining(made) == 1
    # Created without starting counts nothing; its start does.
    waiting = post(
        client, "/api/training/runs", {"dataset": dataset.pk, "start": False}
    )
    assert waiting.status_code == 202 and "RateLimit-Limit" not in waiting
    started = post(client, f"/api/training/runs/{waiting.json()['id']}/start")
    assert started.status_code == 202 and remaining(started) == 0
    refused = post(client, "/api/training/runs", {"dataset": dataset.pk})
    assert_refused(refused, "train", 2)
    assert TrainingRun.objects.count() == 2


def test_labeling_starts_are_limited(
    call_as: Any, limits: Any, fake_anthropic: Any
) -> None:
    limits("label=1/h")
    client = call_as("token")
    album = make_album(name="Moon deck")
    image = make_image(album=album)
    assert post(client, f"/api/albums/{album.slug}/label").status_code == 202
    assert_refused(post(client, f"/api/images/{image.pk}/label"), "label", 1)
    assert LabelingJob.objects.count() == 1


def test_scrape_starts_are_limited(call_as: Any, limits: Any) -> None:
    limits("scrape=1/h")
    client = call_as("token")
    body = {"url": "https://cards.example/gallery", "album_name": "Tarot"}
    started = post(client, "/api/scrape-jobs", body)
    assert started.status_code == 201
    assert (started["RateLimit-Limit"], remaining(started)) == ("1", 0)
    # A bad request is refused for itself and counts nothing.
    assert post(client, "/api/scrape-jobs", {"url": "nope"}).status_code == 422
    assert_refused(post(client, "/api/scrape-jobs", body), "scrape", 1)
    assert ScrapeJob.objects.count() == 1


def test_bug_reports_are_limited_with_headers(call_as: Any, limits: Any) -> None:
    limits("bug_report=1/h")
    client = call_as("user")
    filed = post(client, "/api/bug-reports", {"description": "broken"})
    assert filed.status_code == 201 and remaining(filed) == 0
    assert_refused(
        post(client, "/api/bug-reports", {"description": "x"}), "bug_report", 1
    )


def test_each_user_is_counted_apart(call_as: Any, limits: Any) -> None:
    limits("bug_report=1/h")
    assert (
        post(call_as("user"), "/api/bug-reports", {"description": "a"}).status_code
        == 201
    )
    assert (
        post(call_as("token"), "/api/bug-reports", {"description": "b"}).status_code
        == 201
    )


# --- staff bypass, commands and the admin -------------------------------------------


def test_staff_skip_the_limits_named_for_them(
    call_as: Any, limits: Any, settings: Any
) -> None:
    limits("scrape=1/h")
    settings.RATE_LIMITS_STAFF_EXEMPT = ["scrape"]
    client = call_as("token")
    for n in range(3):
        body = {"url": f"https://cards.example/{n}", "album_name": "Tarot"}
        response = post(client, "/api/scrape-jobs", body)
        assert response.status_code == 201 and "RateLimit-Limit" not in response


def test_commands_are_never_limited(limits: Any, db: Any) -> None:
    limits("scrape=1/h")
    for n in range(3):
        call_command(
            "scrape", f"https://cards.example/{n}", "--album", "Tarot", "--enqueue"
        )
    assert ScrapeJob.objects.count() == 3


@pytest.mark.usefixtures("train_settings")
def test_the_admin_says_why_a_start_is_refused(admin_client: Any, limits: Any) -> None:
    limits("train=1/h")
    dataset = make_dataset()
    runs = [training_run_create(dataset=dataset, enqueue=False) for _ in range(2)]
    first = admin_client.post(
        f"/admin/training/trainingrun/{runs[0].pk}/start/", follow=True
    )
    assert "Queued for the gpu worker." in first.content.decode()
    refused = admin_client.post(
        f"/admin/training/trainingrun/{runs[1].pk}/start/", follow=True
    )
    page = refused.content.decode()
    assert "Too many training runs started (rate limit &#x27;train&#x27;)" in page
    runs[1].refresh_from_db()
    assert runs[1].enqueued_at is None


def test_the_admin_scrape_form_shows_the_refusal(
    admin_client: Any, limits: Any
) -> None:
    limits("scrape=1/h")
    page = "/admin/scraping/scrapejob/add/"
    assert admin_client.post(page, ADD_FORM).status_code == 302
    refused = admin_client.post(page, ADD_FORM)
    assert refused.status_code == 200
    assert "Too many scrape jobs started" in refused.content.decode()
    assert ScrapeJob.objects.count() == 1
