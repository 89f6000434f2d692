"""Dataset versions: immutable snapshots of what a training run learns from.

A version is built from albums, in the order given: their images (each once,
album order then position), minus rejected images and, unless asked, NSFW ones;
each with the caption labeling.selectors.training_captions picks for it. Images
with no caption are left out. The manifest's sha256 identifies the version, so
building the same selection with the same captions twice gives the one row.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import IntegrityError, transaction

from albums.models import Album, AlbumImage, Image
from imagineer_project.errors import Conflict, Invalid
from imagineer_project.permissions import person
from imagineer_project.runs import run_enqueue
from labeling.selectors import training_captions
from training.models import DatasetBuild, DatasetExport, DatasetVersion

if TYPE_CHECKING:
    from django.contrib.auth.models import User

logger = logging.getLogger(__name__)

MANIFEST_FORMAT = 1
MAX_REPEATS = 1000  # kohya folder repeats


class DatasetInvalid(Invalid):
    """Why this selection cannot train (message says what to do)."""

    code = "dataset_invalid"


class DatasetFileMissing(DatasetInvalid):
    """A version's stored image is gone: the version can no longer be used."""

    status = 409


def min_captioned() -> int:
    return settings.TRAINING_MIN_CAPTIONED


def warn_captioned() -> int:
    return settings.TRAINING_WARN_CAPTIONED


# --- manifest ---------------------------------------------------------------------


def manifest_hash(manifest: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of what trains. Album ids, slugs and names
    are left out: they say where the images came from, not what they are, and
    renaming an album must not make a new version."""
    stable = {key: value for key, value in manifest.items() if key != "albums"}
    canonical = json.dumps(
        stable, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def _selected(albums: Sequence[Album], include_nsfw: bool) -> list[tuple]:
    """(image_id, sha256, file, width, height) in dataset order: one query."""
    memberships = (
        AlbumImage.objects.filter(album__in=albums)
        .exclude(image__review_status=Image.ReviewStatus.REJECTED)
        .order_by()
    )
    if not include_nsfw:
        memberships = memberships.filter(image__is_nsfw=False)
    rows = memberships.values_list(
        "album_id",
        "position",
        "id",
        "image_id",
        "image__sha256",
        "image__file",
        "image__width",
        "image__height",
    )
    album_order = {album.pk: n for n, album in enumerate(albums)}
    seen: dict[int, tuple] = {}
    # Album order, then each album's own order; the first place an image
    # appears is its place in the dataset (and its album, its repeats).
    for row in sorted(rows, key=lambda r: (album_order[r[0]], r[1], r[2])):
        seen.setdefault(row[3], (*row[3:], row[0]))
    return list(seen.values())


def _manifest(
    albums: Sequence[Album],
    trigger_word: str,
    include_nsfw: bool,
    repeats: Mapping[int, int] | None = None,
) -> tuple[dict[str, Any], int]:
    """(manifest, eligible images including the uncaptioned ones).

    An item carries `repeats` only when its album repeats more than once, so
    versions built before repeats existed keep their hash."""
    rows = _selected(albums, include_nsfw)
    captions = training_captions(row[0] for row in rows)
    repeats = repeats or {}
    items = [
        {
            "image_id": image_id,
            "sha256": sha256,
            "file": file,
            "width": width,
            "height": height,
            "caption": captions[image_id].text,
            "caption_source": captions[image_id].reason,
            **({"repeats": repeats[album_id]} if repeats.get(album_id, 1) != 1 else {}),
        }
        for image_id, sha256, file, width, height, album_id in rows
        if captions[image_id]
    ]
    manifest = {
        "format": MANIFEST_FORMAT,
        "trigger_word": trigger_word,
        "include_nsfw": include_nsfw,
        "albums": [{"id": a.pk, "slug": a.slug, "name": a.name} for a in albums],
        "items": items,
    }
    return manifest, len(rows)


def _warnings(eligible: int, captioned: int, items: list[dict]) -> list[str]:
    """What is worth knowing about a selection that can train."""
    from albums.dedup import generated_lookalikes

    warnings = []
    lookalikes = generated_lookalikes([item["image_id"] for item in items])
    if lookalikes:
        examples = ", ".join(f"#{pk}" for pk in list(lookalikes)[:5])
        warnings.append(
            f"{len(lookalikes)} image{'s' if len(lookalikes) != 1 else ''} "
            f"({examples}) {'look' if len(lookalikes) != 1 else 'looks'} like "
            "images this system generated: training on "
            "a model's own output narrows what it can do; review them."
        )
    if eligible > captioned:
        missing = eligible - captioned
        warnings.append(
            f"{missing} image{'s' if missing != 1 else ''} without a caption "
            "left out: label the album(s) to include them."
        )
    if captioned < warn_captioned():
        warnings.append(
            f"Only {captioned} captioned images; {warn_captioned()} or more "
            "usually give a better LoRA."
        )
    return warnings


def item_repeats(item: dict[str, Any]) -> int:
    """How often a manifest item counts per epoch (kohya's folder repeats)."""
    return int(item.get("repeats", 1))


def _check_repeats(
    albums: Sequence[Album], repeats: Mapping[int, int] | None
) -> dict[int, int]:
    """{album id: repeats}, each 1..MAX_REPEATS and naming a chosen album."""
    repeats = dict(repeats or {})
    chosen = {album.pk for album in albums}
    for album_id, count in repeats.items():
        if album_id not in chosen:
            raise DatasetInvalid(f"Repeats name album {album_id}, which is not chosen.")
        if not 1 <= count <= MAX_REPEATS:
            raise DatasetInvalid(
                f"Repeats must be between 1 and {MAX_REPEATS} (got {count})."
            )
    return repeats


def repeats_by_album(
    albums: Sequence[Album], repeats: Sequence[int] | None
) -> dict[int, int]:
    """The API's `repeats` list (one count per album, in the same order) as
    {album id: repeats}; raises DatasetInvalid when the lengths differ."""
    if repeats is None:
        return {}
    if len(repeats) != len(albums):
        raise DatasetInvalid(
            f"Give one repeats count per album ({len(albums)}), not {len(repeats)}."
        )
    return {album.pk: count for album, count in zip(albums, repeats, strict=True)}


def album_training_items(album: Album, *, include_nsfw: bool) -> list[dict[str, Any]]:
    """An album's images as manifest-like items (regularisation images): each
    with its training caption, else the album's trigger word, else its name
    (a class image needs no caption of its own). Rejected images left out, and
    NSFW ones unless `include_nsfw`."""
    rows = _selected([album], include_nsfw)
    captions = training_captions(row[0] for row in rows)
    fallback = album.trigger_word.strip() or album.name
    return [
        {
            "image_id": image_id,
            "sha256": sha256,
            "file": file,
            "caption": captions[image_id].text if captions[image_id] else fallback,
        }
        for image_id, sha256, file, _width, _height, _album in rows
    ]


def _check(captioned: int, eligible: int, include_nsfw: bool) -> None:
    if captioned < min_captioned():
        left_out = "rejected" if include_nsfw else "rejected and NSFW"
        raise DatasetInvalid(
            f"Only {captioned} captioned images (of {eligible} usable after "
            f"leaving out {left_out} images); at least {min_captioned()} are "
            "needed: label the album(s) or add captions."
        )


# --- build ------------------------------------------------------------------------


def _default_trigger_word(albums: Sequence[Album]) -> str:
    return next((a.trigger_word.strip() for a in albums if a.trigger_word.strip()), "")


def _existing(sha: str) -> DatasetVersion | None:
    return DatasetVersion.objects.filter(manifest_sha256=sha).first()


def dataset_version_build_or_get(
    *,
    albums: Sequence[Album],
    name: str = "",
    trigger_word: str | None = None,
    include_nsfw: bool = False,
    repeats: Mapping[int, int] | None = None,
    created_by: User | None = None,
) -> tuple[DatasetVersion, bool]:
    """dataset_version_build, and whether this call created the version."""
    albums = list({album.pk: album for album in albums}.values())
    if not albums:
        raise DatasetInvalid("Choose at least one album.")
    repeats = _check_repeats(albums, repeats)
    if trigger_word is None:
        trigger_word = _default_trigger_word(albums)
    manifest, eligible = _manifest(albums, trigger_word.strip(), include_nsfw, repeats)
    captioned = len(manifest["items"])
    _check(captioned, eligible, include_nsfw)
    sha = manifest_hash(manifest)
    existing = _existing(sha)
    if existing is not None:
        existing.albums.add(*albums)
        return existing, False
    fields = {
        "name": (name.strip() or " + ".join(a.name for a in albums))[:200],
        "trigger_word": trigger_word.strip(),
        "include_nsfw": include_nsfw,
        "manifest": manifest,
        "image_count": eligible,
        "captioned_count": captioned,
        "warnings": _warnings(eligible, captioned, manifest["items"]),
        "created_by": person(created_by),
    }
    try:
        with transaction.atomic():
            version = DatasetVersion.objects.create(manifest_sha256=sha, **fields)
            version.albums.set(albums)
    except IntegrityError:  # a concurrent build of the same selection won
        version = DatasetVersion.objects.get(manifest_sha256=sha)
        version.albums.add(*albums)
        return version, False
    logger.info("Dataset version %s built: %d images", version, captioned)
    return version, True


def dataset_version_build(
    *,
    albums: Sequence[Album],
    name: str = "",
    trigger_word: str | None = None,
    include_nsfw: bool = False,
    repeats: Mapping[int, int] | None = None,
    created_by: User | None = None,
) -> DatasetVersion:
    """Build (or find) the dataset version for `albums`.

    Images come once each, album order then position, minus rejected images
    and NSFW ones unless `include_nsfw`; each trains with the caption the
    labeling rule picks, and uncaptioned images are left out (counted in the
    warnings). `trigger_word=None` takes the first album's non-empty trigger
    word. `repeats` maps album ids to how often their images count per epoch
    (kohya's `N_concept` folders; recorded per item, default 1). Raises
    DatasetInvalid below TRAINING_MIN_CAPTIONED captioned images.
    """
    version, _created = dataset_version_build_or_get(
        albums=albums,
        name=name,
        trigger_word=trigger_word,
        include_nsfw=include_nsfw,
        repeats=repeats,
        created_by=created_by,
    )
    return version


# --- as runs: a build from the admin, a zip export -----------------------------------


def dataset_build_start(
    *,
    albums: Sequence[Album],
    name: str = "",
    trigger_word: str | None = None,
    include_nsfw: bool = False,
    repeats: Mapping[int, int] | None = None,
    created_by: User | None = None,
) -> DatasetBuild:
    """Queue dataset_version_build on the worker (training.datasets.runs);
    watch the run, which links the version once built. `repeats` is
    dataset_version_build's, checked here so a wrong one is refused at once."""
    album_ids = list(dict.fromkeys(album.pk for album in albums))
    if not album_ids:
        raise DatasetInvalid("Choose at least one album.")
    repeats = _check_repeats(albums, repeats)
    with transaction.atomic():
        build = DatasetBuild.objects.create(
            name=name.strip()[:200],
            album_ids=album_ids,
            trigger_word=(trigger_word or "").strip(),
            trigger_word_given=trigger_word is not None,
            include_nsfw=include_nsfw,
            album_repeats={str(pk): count for pk, count in repeats.items()},
            created_by=person(created_by),
            message="Waiting for the worker",
        )
        run_enqueue(build)
    return build


def dataset_export_request(
    *,
    dataset: DatasetVersion,
    layout: str,
    repeats: int = 10,
    created_by: User | None = None,
) -> DatasetExport:
    """The export of `dataset` in `layout`: found when it was asked for before,
    else queued. Raises Invalid for an unknown layout or repeats out of range,
    and Conflict for an export that failed or was cancelled (it says why;
    run_retry queues it again)."""
    errors = {}
    if layout not in DatasetExport.Layout.values:
        errors["layout"] = f"one of {', '.join(DatasetExport.Layout.values)}"
    if not 1 <= repeats <= MAX_REPEATS:
        errors["repeats"] = f"from 1 to {MAX_REPEATS}"
    if errors:
        raise Invalid(errors=errors)
    if layout != DatasetExport.Layout.KOHYA:
        repeats = 1  # only kohya folders repeat: one zip per other layout
    export, created = _export_get_or_create(dataset, layout, repeats, created_by)
    if created:
        run_enqueue(export)
        export.refresh_from_db()  # a worker in this process may have ended it
    if export.can_retry:
        why = export.error or export.message
        raise Conflict(
            f"Dataset export {export.pk} {export.status}: {why} Retry it once the "
            "cause is fixed (its retry endpoint, or Retry on its admin page).",
            code="export_failed",
        )
    return export


def _export_get_or_create(
    dataset: DatasetVersion, layout: str, repeats: int, created_by: User | None
) -> tuple[DatasetExport, bool]:
    with transaction.atomic():
        # get_or_create retries a lost race on dataset_export_once.
        return DatasetExport.objects.get_or_create(
            dataset=dataset,
            layout=layout,
            repeats=repeats,
            defaults={
                "created_by": person(created_by),
                "message": "Waiting for the worker",
            },
        )
