"""Every long job's admin page is a read-only report (RunAdmin)."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib import admin

from imagineer_project.run_admin import RunAdmin
from imagineer_project.runs import run_models

pytestmark = pytest.mark.django_db


def test_every_run_model_has_a_run_admin() -> None:
    for model in run_models():
        assert isinstance(admin.site._registry[model], RunAdmin), model


def test_run_change_pages_offer_nothing_to_edit(admin_client: Any) -> None:
    from albums.models import UploadRun
    from labeling.models import LabelingJob
    from scraping.models import ScrapeJob

    runs = [
        UploadRun.objects.create(),
        LabelingJob.objects.create(model_name="m"),
        ScrapeJob.objects.create(start_url="https://example.com/", album_name="x"),
    ]
    for run in runs:
        opts = run._meta
        page = admin_client.get(
            f"/admin/{opts.app_label}/{opts.model_name}/{run.pk}/change/"
        )
        assert page.status_code == 200, run
        assert dict(page.context["adminform"].form.fields) == {}, run
        assert "status" in page.context["adminform"].readonly_fields
