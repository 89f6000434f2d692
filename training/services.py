"""Writes for training runs: create one (dataset version + validated config),
start (or resume) it, cancel it. The gpu worker's half is training.runs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from albums.models import Album
from imagineer_project.disk import disk_floor_check
from imagineer_project.errors import Conflict, Invalid
from imagineer_project.permissions import person
from imagineer_project.ratelimit import rate_limit_take
from imagineer_project.runs import BaseRun, run_enqueue, run_retry
from training.config import ConfigInvalid, config_check_machine, config_validate
from training.datasets.services import dataset_version_build
from training.models import DatasetVersion, TrainingRun

if TYPE_CHECKING:
    from django.contrib.auth.models import User


class RunNotStartable(Conflict):
    """The run is queued or running already, or it succeeded."""


# --- create and start ---------------------------------------------------------------


def training_run_create(
    *,
    dataset: DatasetVersion,
    base_model: str = "",
    config: dict[str, Any] | None = None,
    name: str = "",
    created_by: User | None = None,
    enqueue: bool = True,
    allow_below_minimum: bool = False,
    rate_limited: bool = False,
) -> TrainingRun:
    """A run of `dataset` on `base_model` (default TRAINING_BASE_MODEL).

    `config` is checked and completed by training.config.config_validate
    (raises ConfigInvalid naming each bad field and its range; an unset
    resolution follows the base model's family), and against this machine
    (config_check_machine: adamw8bit needs CUDA); `reg_album` must name an
    album with images that is not one of the dataset's. With `enqueue`
    the run goes to the gpu worker once the transaction commits; otherwise it
    waits for training_run_start. Raises InsufficientStorage, creating
    nothing, when the training work dir's disk is below DISK_FREE_FLOOR_BYTES.
    With `rate_limited` (the API and the admin) a queued run counts against
    the `train` rate limit (RateLimitExceeded); commands are never limited.
    """
    base_model = (base_model or settings.TRAINING_BASE_MODEL).strip()
    if not base_model:
        raise Invalid("Name a base model: a local diffusers folder or a hub id.")
    full, warnings = config_validate(
        config, allow_below_minimum=allow_below_minimum, base_model=base_model
    )
    _check_reg_album(full, dataset)
    config_check_machine(full)
    # Even unqueued: `manage.py train` runs it in the foreground at once.
    disk_floor_check("training")
    if rate_limited and enqueue:
        rate_limit_take("train", user=created_by)
    now = timezone.now()
    with transaction.atomic():
        run = TrainingRun.objects.create(
            name=(name.strip() or dataset.name)[:200],
            dataset=dataset,
            base_model=base_model[:500],
            config=full,
            progress_total=full["steps"],
            log_tail="\n".join(f"{now:%H:%M:%S} Warning: {w}" for w in warnings),
            enqueued_at=now if enqueue else None,
            created_by=person(created_by),
        )
        if enqueue:
            run_enqueue(run)
    return run


def _check_reg_album(config: dict[str, Any], dataset: DatasetVersion) -> None:
    """A regularisation album must exist, hold images and not be a training album."""
    album_id = config.get("reg_album") or 0
    if not album_id:
        return
    problem = ""
    album = Album.objects.filter(pk=album_id).first()
    if album_id < 0 or album is None:
        problem = f"reg_album names no album (got {album_id})"
    elif dataset.albums.filter(pk=album_id).exists():
        problem = f"reg_album {album.name!r} is one of the dataset's own albums"
    elif not album.memberships.exists():
        problem = f"reg_album {album.name!r} holds no images"
    if problem:
        raise ConfigInvalid({"reg_album": problem})


def training_run_create_from_albums(
    *,
    albums: Sequence[Album],
    trigger_word: str | None = None,
    include_nsfw: bool = False,
    repeats: Mapping[int, int] | None = None,
    created_by: User | None = None,
    **kwargs: Any,
) -> TrainingRun:
    """Build (or find) the albums' dataset version, then create the run.

    `repeats` maps album ids to how often their images count per epoch
    (kohya's folder repeats; unlisted albums 1). The config is checked first,
    so a bad config builds nothing. Raises ConfigInvalid, or DatasetInvalid
    when the albums cannot train.
    """
    config_validate(
        kwargs.get("config"),
        allow_below_minimum=kwargs.get("allow_below_minimum", False),
    )
    disk_floor_check("training")  # before the dataset is built
    if kwargs.pop("rate_limited", False) and kwargs.get("enqueue", True):
        rate_limit_take("train", user=created_by)
    dataset = dataset_version_build(
        albums=albums,
        trigger_word=trigger_word,
        include_nsfw=include_nsfw,
        repeats=repeats,
        created_by=created_by,
    )
    return training_run_create(dataset=dataset, created_by=created_by, **kwargs)


def training_run_can_start(run: TrainingRun) -> bool:
    """Created without starting, or ended failed or cancelled (then it resumes)."""
    if run.status == BaseRun.Status.QUEUED:
        return run.enqueued_at is None
    return run.can_retry


def training_run_start(
    *, run: TrainingRun, user: User | None = None, rate_limited: bool = False
) -> TrainingRun:
    """Hand the run to the gpu worker.

    A failed or cancelled run is queued again through run_retry and resumes
    from its latest checkpoint, with a fresh set of attempts. Raises
    RunNotStartable for a run that is queued, running or succeeded, and
    InsufficientStorage below the disk floor (DISK_FREE_FLOOR_BYTES). With
    `rate_limited`, a start counts against `user`'s `train` rate limit.
    """
    disk_floor_check("training")
    if rate_limited and training_run_can_start(run):
        rate_limit_take("train", user=user)
    now = timezone.now()
    with transaction.atomic():
        if run.can_retry:
            run_retry(run)
            TrainingRun.objects.filter(pk=run.pk).update(enqueued_at=now)
            run.enqueued_at = now
            return run
        fresh = TrainingRun.objects.filter(
            pk=run.pk, status=BaseRun.Status.QUEUED, enqueued_at__isnull=True
        ).update(enqueued_at=now)
        run.refresh_from_db()
        if not fresh:
            raise RunNotStartable(
                f"Training run {run.pk} is {run.status}"
                + (" and already queued" if run.status == "queued" else "")
                + "; only a run created without starting, or one that failed or "
                "was cancelled, can be started."
            )
        run_enqueue(run)
    return run
