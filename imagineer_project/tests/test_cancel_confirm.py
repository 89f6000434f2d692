"""Every run page's Cancel asks first and, once asked, says "Cancelling…" until
the worker stops; a run that has counted nothing yet never reads "0 of 0"."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from albums.models import UploadRun
from albums.services import upload_run_create
from albums.tests.builders import make_album, make_image_bytes
from imagineer_project.runs import BaseRun

pytestmark = pytest.mark.django_db


def change_url(run: BaseRun) -> str:
    opts = run._meta
    return f"/admin/{opts.app_label}/{opts.model_name}/{run.pk}/change/"


def uploads(count: int) -> list[SimpleUploadedFile]:
    return [
        SimpleUploadedFile(f"{i}.jpg", make_image_bytes(seed=i)) for i in range(count)
    ]


def test_a_fresh_upload_counts_its_files_from_the_start(admin_client: Any) -> None:
    run = upload_run_create(files=uploads(3), album=make_album())  # not started

    html = admin_client.get(change_url(run)).content.decode()
    assert "3 file(s) waiting for a worker" in html
    assert "0% (0 of 3 files)" in html
    assert "0 of 0" not in html


def test_a_run_with_nothing_counted_yet_waits_rather_than_reading_0_of_0(
    admin_client: Any,
) -> None:
    run = UploadRun.objects.create(message="Waiting for the worker")
    html = admin_client.get(change_url(run)).content.decode()
    assert "Waiting for a worker" in html and "0 of 0" not in html

    UploadRun.objects.filter(pk=run.pk).update(status="running")
    html = admin_client.get(change_url(run)).content.decode()
    assert "Starting" in html and "0 of 0" not in html


def test_cancel_asks_first_then_the_page_says_cancelling(admin_client: Any) -> None:
    run = upload_run_create(files=uploads(1), album=make_album())
    UploadRun.objects.filter(pk=run.pk).update(status="running")

    html = admin_client.get(change_url(run)).content.decode()
    assert f'data-confirm="Cancel upload run #{run.pk}?' in html
    assert "imagineer/progress.js" in html and "Cancelling…" not in html

    admin_client.post(change_url(run).replace("/change/", "/cancel/"))
    html = admin_client.get(change_url(run)).content.decode()
    assert "Cancelling…" in html
    assert "data-confirm" not in html  # nothing left to ask
    assert '<meta http-equiv="refresh"' in html  # still watching the worker

    UploadRun.objects.filter(pk=run.pk).update(status="cancelled")
    html = admin_client.get(change_url(run)).content.decode()
    assert "Cancelling…" not in html and '<meta http-equiv="refresh"' not in html


def test_every_kind_of_run_page_asks_before_cancelling(admin_client: Any) -> None:
    from labeling.models import LabelingJob
    from scraping.models import ScrapeJob

    runs = [
        UploadRun.objects.create(status="running"),
        LabelingJob.objects.create(model_name="m", status="running"),
        ScrapeJob.objects.create(
            start_url="https://example.com/", album_name="x", status="running"
        ),
    ]
    for run in runs:
        html = admin_client.get(change_url(run)).content.decode()
        assert f'data-confirm="Cancel {run._meta.verbose_name} #{run.pk}?' in html
