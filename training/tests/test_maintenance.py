"""purge-training-workdirs on real folders, deleting a run from the admin, and a
retry after its work dir was purged."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from imagineer_project.maintenance.registry import PASSES, PassReport
from imagineer_project.runs import run_claim, run_retry
from training.maintenance import workdirs_purge
from training.models import TrainingRun
from training.runs import run_work_dir, training_run_execute
from training.tests.builders import make_dataset, make_tiny_run

pytestmark = pytest.mark.django_db

RUNS = "/admin/training/trainingrun/"


@pytest.fixture
def work(settings: Any, tmp_path: Path) -> Path:
    settings.TRAINING_WORK_DIR = tmp_path / "work"
    settings.TRAINING_WORKDIR_RETENTION_DAYS = 14
    settings.TRAINING_WORKDIR_KEEP_SUCCEEDED = False
    settings.TRAINING_WORK_DIR.mkdir()
    return settings.TRAINING_WORK_DIR


@pytest.fixture
def dataset(db: Any, settings: Any) -> Any:
    settings.TRAINING_MIN_CAPTIONED = 3
    return make_dataset(count=3)


def make_run(dataset: Any, status: str, days: int | None = None, **fields: Any) -> Any:
    finished = None if days is None else timezone.now() - timedelta(days=days)
    return TrainingRun.objects.create(
        dataset=dataset,
        name="blocks",
        base_model="tiny",
        status=status,
        finished_at=finished,
        **fields,
    )


def write(path: Path, size: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)


def fill(folder: Path, steps: tuple[int, ...] = (2, 4)) -> None:
    """A work dir as a run leaves it: data/, checkpoints, a leftover temp
    checkpoint, the LoRA and a sample."""
    write(folder / "data" / "0001.png", 1000)
    for step in steps:
        checkpoint = folder / "out" / "checkpoints" / f"step-{step:06d}"
        write(checkpoint / "lora.safetensors", 300)
        write(checkpoint / "training_state.pt", 200)
        write(checkpoint / "checkpoint.json", 10)
    write(
        folder / "out" / "checkpoints" / ".tmp-step-000006-ab" / "lora.safetensors", 5
    )
    write(folder / "out" / "blocks.safetensors", 300)
    write(folder / "out" / "samples" / "sample-00.png", 50)


def age(folder: Path, days: int) -> None:
    stamp = (timezone.now() - timedelta(days=days)).timestamp()
    for path in [folder, *folder.rglob("*")]:
        os.utime(path, (stamp, stamp), follow_symlinks=False)


def names(report: PassReport) -> dict[str, int]:
    return {item["name"]: item["size"] for item in report.removed}


def test_the_pass_is_registered_daily() -> None:
    assert PASSES["purge-training-workdirs"].func is workdirs_purge
    assert PASSES["purge-training-workdirs"].minutes == 24 * 60


@pytest.fixture
def library(work: Path, dataset: Any) -> dict[str, Any]:
    runs = {
        "failed": make_run(dataset, "failed", 20, last_checkpoint_step=4),
        "cancelled": make_run(dataset, "cancelled", 15),
        "recent_failed": make_run(dataset, "failed", 3),
        "succeeded": make_run(dataset, "succeeded", 30),
        "running": make_run(dataset, "running"),
        "queued": make_run(dataset, "queued"),
    }
    for run in runs.values():
        fill(run_work_dir(run))
    fill(work / "run-9999")  # its run was deleted long ago
    age(work / "run-9999", 20)
    fill(work / "run-9998")  # deleted yesterday
    age(work / "run-9998", 1)
    return runs


def test_dry_run_reports_everything_due_and_removes_nothing(
    library: dict[str, Any], work: Path
) -> None:
    before = sorted(p.relative_to(work) for p in work.rglob("*"))
    report = PassReport(dry_run=True)

    workdirs_purge(report)

    failed, cancelled, ok = (
        library[k].pk for k in ("failed", "cancelled", "succeeded")
    )
    whole = 1000 + 2 * 510 + 5 + 300 + 50
    assert names(report) == {
        f"run-{failed}": whole,
        f"run-{cancelled}": whole,
        "run-9999": whole,
        f"run-{ok}/data": 1000,
        f"run-{ok}/out/blocks.safetensors": 300,
        f"run-{ok}/out/checkpoints/.tmp-step-000006-ab": 5,
        f"run-{ok}/out/checkpoints/step-000002": 510,
        f"run-{ok}/out/samples": 50,
    }
    assert report.bytes_freed == sum(names(report).values())
    assert sorted(p.relative_to(work) for p in work.rglob("*")) == before
    assert TrainingRun.objects.get(pk=failed).last_checkpoint_step == 4


def test_purge_removes_what_is_due_and_keeps_the_rest(
    library: dict[str, Any], work: Path
) -> None:
    report = PassReport(dry_run=False)

    workdirs_purge(report)

    assert sorted(p.name for p in work.iterdir()) == sorted(
        [f"run-{library[k].pk}" for k in ("recent_failed", "succeeded", "running")]
        + [f"run-{library['queued'].pk}", "run-9998"]
    )
    kept = work / f"run-{library['succeeded'].pk}"
    assert sorted(str(p.relative_to(kept)) for p in kept.rglob("*")) == [
        "out",
        "out/checkpoints",
        "out/checkpoints/step-000004",
        "out/checkpoints/step-000004/checkpoint.json",
        "out/checkpoints/step-000004/lora.safetensors",
        "out/checkpoints/step-000004/training_state.pt",
    ]
    for key in ("recent_failed", "running", "queued"):
        assert (run_work_dir(library[key]) / "data" / "0001.png").exists()
    assert report.bytes_freed > 4 * 2000
    assert TrainingRun.objects.get(pk=library["failed"].pk).last_checkpoint_step == 0
    # A second pass finds nothing more.
    again = PassReport(dry_run=False)
    workdirs_purge(again)
    assert again.removed == []


def test_a_succeeded_run_without_checkpoints_loses_its_whole_dir(
    work: Path, dataset: Any
) -> None:
    run = make_run(dataset, "succeeded", 30)
    fill(run_work_dir(run), steps=())

    report = PassReport(dry_run=False)
    workdirs_purge(report)

    assert names(report) == {f"run-{run.pk}": 1000 + 5 + 300 + 50}
    assert not run_work_dir(run).exists()


def test_succeeded_runs_keep_everything_when_configured(
    work: Path, dataset: Any, settings: Any
) -> None:
    settings.TRAINING_WORKDIR_KEEP_SUCCEEDED = True
    run = make_run(dataset, "succeeded", 30)
    fill(run_work_dir(run))

    report = PassReport(dry_run=False)
    workdirs_purge(report)

    assert report.removed == []
    assert (run_work_dir(run) / "data" / "0001.png").exists()


def test_symlinks_are_never_followed_out_of_the_work_dir(
    work: Path, dataset: Any, tmp_path: Path
) -> None:
    outside = tmp_path / "models"
    write(outside / "precious.safetensors", 100)
    failed = make_run(dataset, "failed", 30)
    fill(run_work_dir(failed))
    (run_work_dir(failed) / "base").symlink_to(outside)
    linked = make_run(dataset, "failed", 30)
    (work / f"run-{linked.pk}").symlink_to(outside)

    report = PassReport(dry_run=False)
    workdirs_purge(report)

    assert (outside / "precious.safetensors").read_bytes() == b"x" * 100
    assert not run_work_dir(failed).exists()
    assert (work / f"run-{linked.pk}").is_symlink()
    assert report.problems == [f"run-{linked.pk} is a symbolic link; left alone."]


# --- deleting from the admin ------------------------------------------------------


def test_delete_page_names_the_work_dir_and_post_removes_it(
    admin_client: Any, work: Path, dataset: Any, django_capture_on_commit_callbacks: Any
) -> None:
    run = make_run(dataset, "failed", 1)
    write(run_work_dir(run) / "data" / "big.png", 3 * 1024 * 1024)

    page = admin_client.get(f"{RUNS}{run.pk}/delete/")
    with django_capture_on_commit_callbacks(execute=True):
        done = admin_client.post(f"{RUNS}{run.pk}/delete/", {"post": "yes"})

    assert page.status_code == 200
    assert f"The work dir of training run #{run.pk} (3.0\xa0MB)" in page.text
    assert "removes its work dir" in page.text
    assert done.status_code == 302
    assert not TrainingRun.objects.filter(pk=run.pk).exists()
    assert not run_work_dir(run).exists()


def test_an_active_run_cannot_be_deleted(
    admin_client: Any, work: Path, dataset: Any
) -> None:
    run = make_run(dataset, "running")
    fill(run_work_dir(run))

    page = admin_client.get(f"{RUNS}{run.pk}/delete/")
    admin_client.post(f"{RUNS}{run.pk}/delete/", {"post": "yes"})

    assert page.status_code == 403
    assert TrainingRun.objects.filter(pk=run.pk).exists()
    assert (run_work_dir(run) / "data" / "0001.png").exists()


def test_delete_selected_lists_work_dirs_and_refuses_with_an_active_run(
    admin_client: Any, work: Path, dataset: Any, django_capture_on_commit_callbacks: Any
) -> None:
    done = [make_run(dataset, "succeeded", 2), make_run(dataset, "cancelled", 2)]
    for run in done:
        fill(run_work_dir(run))
    running = make_run(dataset, "running")
    fill(run_work_dir(running))
    pks = [run.pk for run in done]

    blocked = admin_client.post(
        RUNS, {"action": "delete_selected", "_selected_action": [*pks, running.pk]}
    )
    confirm = admin_client.post(
        RUNS, {"action": "delete_selected", "_selected_action": pks}
    )
    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post(
            RUNS, {"action": "delete_selected", "_selected_action": pks, "post": "yes"}
        )

    assert f"Training run #{running.pk} blocks (running) — cancel it first" in (
        blocked.text
    )
    for run in done:
        assert f"The work dir of training run #{run.pk} (" in confirm.text
    assert "Work dirs: 2" in confirm.text
    assert list(TrainingRun.objects.values_list("pk", flat=True)) == [running.pk]
    assert not any(run_work_dir(run).exists() for run in done)
    assert run_work_dir(running).exists()


# --- a retry after the purge ------------------------------------------------------


@pytest.mark.usefixtures("train_env")
def test_a_failed_run_whose_work_dir_was_purged_retries_from_the_first_step(
    django_capture_on_commit_callbacks: Any,
) -> None:
    run = make_tiny_run(steps=4, checkpoint_every=2)
    claimed = run_claim(TrainingRun, run.pk)
    with pytest.raises(RuntimeError):
        training_run_execute(claimed, on_step=_fail_at(3))
    long_ago = timezone.now() - timedelta(days=30)
    TrainingRun.objects.filter(pk=run.pk).update(status="failed", finished_at=long_ago)
    assert run_work_dir(run).exists()

    workdirs_purge(PassReport(dry_run=False))
    run.refresh_from_db()
    assert not run_work_dir(run).exists()
    assert run.last_checkpoint_step == 0
    assert run.retry_refusal() == ""
    with django_capture_on_commit_callbacks(execute=True):
        run_retry(run)

    run.refresh_from_db()
    assert run.status == "succeeded", run.error
    assert "resumed from" not in run.message
    assert run.loras.count() == 1


def _fail_at(step: int) -> Any:
    def on_step(report: Any) -> None:
        if report.step == step:
            raise RuntimeError(f"stopped at step {step}")

    return on_step
