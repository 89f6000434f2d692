"""The admin of maintenance runs: the list, a run's report, and "Run
maintenance" in place of an add form."""

from __future__ import annotations

import pytest
from django.urls import reverse

from imagineer_project.maintenance.registry import PASSES
from imagineer_project.models import MaintenanceRun

pytestmark = pytest.mark.django_db

LIST = reverse("admin:imagineer_maintenancerun_changelist")
ADD = reverse("admin:imagineer_maintenancerun_add")


def make_run(**fields) -> MaintenanceRun:
    report = {
        "dry_run": False,
        "items_removed": 3,
        "bytes_freed": 3_500_000,
        "removed": [
            {
                "what": "file",
                "name": "images/aa/bb/x.jpg",
                "size": 3_500_000,
                "count": 1,
            },
            {"what": "crawl log rows", "name": "job 7", "size": 0, "count": 2},
        ],
        "problems": ["images/cc/dd/y.png: referenced by images, not in storage"],
        "problem_count": 1,
        "facts": {"files under no owner": {"other": 4}, "grace period (hours)": 24},
    }
    values = {
        "task": "reconcile-storage",
        "status": "succeeded",
        "trigger": "schedule",
        "items_removed": 3,
        "bytes_freed": 3_500_000,
        "report": report,
        "message": "Removed 1 file, 2 crawl log rows (3.3 MB)",
    } | fields
    return MaintenanceRun.objects.create(**values)


def test_the_list_shows_each_run_with_its_bytes(admin_client) -> None:
    make_run()

    page = admin_client.get(LIST).content.decode()

    assert "reconcile-storage" in page
    assert "3.3\xa0MB" in page
    assert "Run maintenance" in page
    filtered = admin_client.get(
        LIST, {"task": "reconcile-storage", "dry_run__exact": 1}
    )
    assert filtered.status_code == 200
    assert "0 maintenance runs" in filtered.content.decode()


def test_a_run_page_shows_its_report(admin_client) -> None:
    run = make_run()

    answer = admin_client.get(
        reverse("admin:imagineer_maintenancerun_change", args=[run.pk])
    )
    page = answer.content.decode()

    assert dict(answer.context["adminform"].form.fields) == {}  # a report only

    assert "images/aa/bb/x.jpg" in page
    assert "crawl log rows" in page
    assert "images/cc/dd/y.png: referenced by images, not in storage" in page
    assert "files under no owner" in page
    assert "<th>other</th><td>4</td>" in page


def test_run_maintenance_starts_the_chosen_passes_as_dry_runs(
    admin_client, django_capture_on_commit_callbacks
) -> None:
    form = admin_client.get(ADD).content.decode()
    for name in PASSES:
        assert f'value="{name}"' in form

    with django_capture_on_commit_callbacks(execute=True):
        answer = admin_client.post(
            ADD, {"tasks": ["reconcile-storage"], "dry_run": "on"}, follow=True
        )

    run = MaintenanceRun.objects.get()
    assert (run.task, run.trigger, run.dry_run) == ("reconcile-storage", "admin", True)
    assert run.status == "succeeded"  # the worker is this process in tests
    assert answer.redirect_chain[-1][0] == reverse(
        "admin:imagineer_maintenancerun_change", args=[run.pk]
    )
    assert "Queued a dry run of reconcile-storage." in answer.content.decode()


def test_run_maintenance_does_not_start_a_pass_twice(admin_client) -> None:
    running = make_run(status="running", report={})

    answer = admin_client.post(ADD, {"tasks": ["reconcile-storage"]}, follow=True)

    assert MaintenanceRun.objects.get() == running
    assert f"already running (run #{running.pk})" in answer.content.decode()
