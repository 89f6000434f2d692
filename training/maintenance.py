"""Maintenance passes this app registers (imagineer_project.maintenance.registry),
and what deleting a run removes from disk.

A run's work dir (TRAINING_WORK_DIR/run-<id>/, training.runs) holds the
dataset copy (`data/`) and `out/`: checkpoints, the LoRA, the sample PNGs.
Nothing a person sees reads it once the run has ended: the LoRA is copied to
storage and the samples to an album when the run succeeds, and the run's page
shows its row. Only a retry reads it, to resume from the latest checkpoint; a
retry after `purge-training-workdirs` starts from the first step (the pass
sets `last_checkpoint_step` back to 0, so the page says so too).

Everything here stays inside TRAINING_WORK_DIR: symbolic links are removed
as links, never followed, and sizes count the links, not their targets.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from datetime import datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from imagineer_project.errors import Conflict
from imagineer_project.maintenance.registry import PassReport, register_pass
from imagineer_project.runs import BaseRun
from training.ml.checkpoints import checkpoints_root, latest_checkpoint
from training.models import TrainingRun
from training.runs import run_work_dir

logger = logging.getLogger(__name__)

_RUN_DIR = re.compile(r"run-(\d+)")


class TrainingRunActive(Conflict):
    """A queued or running run is not deleted: its worker writes the work dir."""

    code = "run_active"


# --- sizes and removal, never leaving TRAINING_WORK_DIR -----------------------------


def tree_size(path: Path) -> int:
    """Bytes of the files under `path`; a symbolic link counts as the link
    (os.walk lists a link to a folder among the folders, never entering it)."""
    if path.is_symlink() or not path.is_dir():
        return path.lstat().st_size
    total = 0
    for folder, dirs, files in os.walk(path, followlinks=False):
        links = [name for name in dirs if (Path(folder) / name).is_symlink()]
        for name in files + links:
            total += (Path(folder) / name).lstat().st_size
    return total


def _newest_mtime(path: Path) -> float:
    newest = path.lstat().st_mtime
    for folder, dirs, files in os.walk(path, followlinks=False):
        for name in dirs + files:
            newest = max(newest, (Path(folder) / name).lstat().st_mtime)
    return newest


def tree_remove(path: Path) -> None:
    """Remove a file, a link (not its target) or a folder tree (rmtree
    unlinks the links inside without following them)."""
    if path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)
    elif path.is_dir():
        shutil.rmtree(path)


def _relative(path: Path) -> str:
    return path.relative_to(settings.TRAINING_WORK_DIR).as_posix()


# --- deleting a run -------------------------------------------------------------------


def training_run_work_dir_size(*, run: TrainingRun) -> int:
    """Bytes of the run's work dir (0 when it has none)."""
    work = run_work_dir(run)
    return tree_size(work) if work.exists() or work.is_symlink() else 0


def training_run_delete(*, run: TrainingRun) -> int:
    """Delete an ended run and, once the delete commits, its work dir; returns
    the work dir's bytes. Its LoRA and sample album stay (their own rows).

    Raises TrainingRunActive for a queued or running run: its worker would
    write the dir again, and a row deleted under it fails the run midway.
    """
    with transaction.atomic():
        locked = TrainingRun.objects.select_for_update().filter(pk=run.pk).first()
        if locked is None:
            return 0
        if locked.is_active:
            raise TrainingRunActive(
                f"Training run {run.pk} is {locked.status}; cancel it and wait "
                "for it to end before deleting it."
            )
        work = run_work_dir(locked)
        size = training_run_work_dir_size(run=locked)
        locked.delete()
        # A rollback keeps the row, so the dir goes only once the delete commits.
        transaction.on_commit(lambda: _remove_quietly(work))
    logger.info("Deleted training run %s and its work dir (%s bytes)", run.pk, size)
    return size


def _remove_quietly(path: Path) -> None:
    try:
        tree_remove(path)
    except OSError:
        logger.warning(
            "Could not remove %s; purge-training-workdirs will", path, exc_info=True
        )


# --- purge-training-workdirs ----------------------------------------------------------


def workdirs_purge(report: PassReport) -> None:
    """Remove the work dirs of failed, cancelled and deleted runs older than
    TRAINING_WORKDIR_RETENTION_DAYS, and trim a succeeded run's to its final
    checkpoint (unless TRAINING_WORKDIR_KEEP_SUCCEEDED). Active runs' dirs are
    never touched."""
    root = Path(settings.TRAINING_WORK_DIR)
    if not root.is_dir():
        return
    folders = {
        int(match.group(1)): child
        for child in root.iterdir()
        if (match := _RUN_DIR.fullmatch(child.name))
    }
    runs = {
        run.pk: run
        for run in TrainingRun.objects.filter(pk__in=folders).only(
            "pk", "status", "finished_at"
        )
    }
    cutoff = timezone.now() - timedelta(days=settings.TRAINING_WORKDIR_RETENTION_DAYS)
    for done, (pk, folder) in enumerate(sorted(folders.items())):
        report.progress(done, len(folders), f"Work dir {folder.name}")
        if folder.is_symlink():
            report.problem(f"{folder.name} is a symbolic link; left alone.")
            continue
        _purge_one(report, folder, runs.get(pk), cutoff)
    report.progress(len(folders), len(folders), "Done")


def _purge_one(
    report: PassReport, folder: Path, run: TrainingRun | None, cutoff: datetime
) -> None:
    if run is None:
        # A deleted run's leftover; the newest file inside dates it.
        if _newest_mtime(folder) < cutoff.timestamp():
            _remove(report, "work dir", folder)
        return
    if run.is_active or run.finished_at is None or run.finished_at >= cutoff:
        return
    if run.status in BaseRun.RETRYABLE:
        _remove(report, "work dir", folder)
        if not report.dry_run:
            # A retry now starts from step 0; the page and API say so. Only an
            # ended run (a retry queued since the scan keeps its number).
            TrainingRun.objects.filter(pk=run.pk, status__in=BaseRun.RETRYABLE).update(
                last_checkpoint_step=0
            )
    elif not settings.TRAINING_WORKDIR_KEEP_SUCCEEDED:
        _trim_to_final_checkpoint(report, folder)


def _trim_to_final_checkpoint(report: PassReport, folder: Path) -> None:
    """Everything in a succeeded run's dir but out/checkpoints/<latest>/."""
    final = latest_checkpoint(checkpoints_root(folder / "out"))
    if final is None:
        # Nothing to keep: its LoRA and samples are in storage already.
        _remove(report, "work dir", folder)
        return
    for path in _outside(folder, [final.path]):
        _remove(report, "work dir part", path)


def _outside(folder: Path, keep: list[Path]) -> list[Path]:
    """The entries under `folder` that are neither kept nor above a kept one."""
    found = []
    for child in sorted(folder.iterdir()):
        if child in keep:
            continue
        above = any(child in kept.parents for kept in keep)
        if above and child.is_dir() and not child.is_symlink():
            found += _outside(child, keep)
        else:
            found.append(child)
    return found


def _remove(report: PassReport, what: str, path: Path) -> None:
    size = tree_size(path)
    if not report.dry_run:
        try:
            tree_remove(path)
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__  # str(exc) has the path
            report.problem(f"Could not remove {_relative(path)}: {reason}")
            return
    report.remove(what, _relative(path), size=size)


register_pass(
    "purge-training-workdirs",
    workdirs_purge,
    minutes=24 * 60,
    description="Work dirs of failed, cancelled and deleted training runs older "
    "than TRAINING_WORKDIR_RETENTION_DAYS; a succeeded run's keeps only its final "
    "checkpoint (all of it with TRAINING_WORKDIR_KEEP_SUCCEEDED).",
)
