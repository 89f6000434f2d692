"""The bodies of the dataset runs the worker executes: building a version from
albums (the admin's build form) and writing a version's zip export to storage
(the API's and the admin's downloads)."""

from __future__ import annotations

import logging

from django.core.files import File
from django.core.files.storage import default_storage

from albums.models import Album
from imagineer_project.runs import run_checkpoint
from training.datasets.export import dataset_export_zip
from training.datasets.services import DatasetInvalid, dataset_version_build_or_get
from training.models import DatasetBuild, DatasetExport

logger = logging.getLogger(__name__)


def dataset_build_execute(build: DatasetBuild) -> str:
    """Build (or find) the version the run asks for and link it. Resuming is
    building again: the same selection gives the same version."""
    found = Album.objects.in_bulk(build.album_ids)
    albums = [found[pk] for pk in build.album_ids if pk in found]
    if len(albums) < len(build.album_ids):
        raise DatasetInvalid("An album chosen for this build was deleted since.")
    run_checkpoint(build, total=1, message=f"Reading {len(albums)} album(s)")
    dataset, created = dataset_version_build_or_get(
        albums=albums,
        name=build.name,
        trigger_word=build.trigger_word if build.trigger_word_given else None,
        include_nsfw=build.include_nsfw,
        repeats={int(pk): count for pk, count in build.album_repeats.items()},
        created_by=build.created_by,
    )
    DatasetBuild.objects.filter(pk=build.pk).update(
        dataset=dataset, created_version=created
    )
    run_checkpoint(build, done=1)
    if created:
        return f"Built “{dataset}”: {dataset.captioned_count} images"
    return f"The same selection is already “{dataset}”"


def export_key(export: DatasetExport) -> str:
    """The zip's storage key: named by what is in it, so the same export is
    the same file."""
    sha = export.dataset.manifest_sha256
    return f"exports/datasets/{sha}-{export.layout}-{export.repeats}.zip"


def dataset_export_execute(export: DatasetExport) -> str:
    """Write the zip to storage. A zip already there (an attempt that died
    after writing it) is kept: the same export gives the same bytes."""
    key = export_key(export)
    if not default_storage.exists(key):

        def progress(done: int, total: int) -> None:
            run_checkpoint(
                export, done=done, total=total, message=f"{done} of {total} files"
            )

        with dataset_export_zip(
            export.dataset,
            export.layout,
            repeats=export.repeats,
            on_progress=progress,
        ) as archive:
            stored = default_storage.save(key, File(archive, name=key))
        if stored != key:  # a concurrent attempt stored it first
            default_storage.delete(stored)
    size = default_storage.size(key)
    DatasetExport.objects.filter(pk=export.pk).update(file=key, size=size)
    return f"{size:,} bytes ready to download"
