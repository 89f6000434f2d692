"""An upload run's per-file results are UploadFile rows: the admin page and
the API read them in a fixed number of queries, however many files."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from albums.models import UploadFile, UploadRun
from albums.tests.builders import make_album

pytestmark = pytest.mark.django_db

RUNS = "/admin/albums/uploadrun/"


def make_run_with_files(count: int) -> UploadRun:
    run = UploadRun.objects.create(album=make_album(), status="succeeded")
    UploadFile.objects.bulk_create(
        UploadFile(
            run=run,
            position=n,
            filename=f"{n}.bin",
            status="rejected",
            code="unsupported",
            reason=f"file {n} is no image",
        )
        for n in range(count)
    )
    return run


def queries(fetch: Any) -> int:
    with CaptureQueriesContext(connection) as captured:
        fetch()
    return len(captured)


def test_admin_results_table_reads_rows_in_constant_queries(admin_client) -> None:
    few, many = make_run_with_files(3), make_run_with_files(60)
    page = admin_client.get(f"{RUNS}{many.pk}/change/").text
    assert "file 59 is no image" in page
    assert queries(lambda: admin_client.get(f"{RUNS}{few.pk}/change/")) == queries(
        lambda: admin_client.get(f"{RUNS}{many.pk}/change/")
    )


def test_admin_results_table_shows_the_first_rows_and_a_count(
    admin_client, monkeypatch: pytest.MonkeyPatch
) -> None:
    from albums import admin as albums_admin

    monkeypatch.setattr(albums_admin, "RESULTS_SHOWN", 5)
    run = make_run_with_files(8)
    page = admin_client.get(f"{RUNS}{run.pk}/change/").text
    assert "file 4 is no image" in page and "file 5 is no image" not in page
    assert "…and 3 more." in page


def test_api_run_detail_lists_the_rows_in_file_order(staff_client) -> None:
    run = make_run_with_files(3)
    body = staff_client.get(f"/api/uploads/{run.pk}").json()
    assert body["results"] == [
        {
            "filename": f"{n}.bin",
            "status": "rejected",
            "image_id": None,
            "code": "unsupported",
            "reason": f"file {n} is no image",
            "warnings": [],
        }
        for n in range(3)
    ]
