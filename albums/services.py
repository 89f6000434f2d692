"""Writes and workflows for albums and images."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.files.base import ContentFile, File
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone
from django.utils.text import slugify

from albums.counts import album_count_appended, albums_holding, albums_recount
from albums.dedup import HashIndex, library_index
from albums.ingest import (
    EXTENSIONS,
    FILE_EXTENSION,
    ImageRejected,
    InspectedImage,
    decode_pixels,
    inspect_image,
    render_thumbnail,
    safe_display_name,
)
from albums.models import (
    Album,
    AlbumImage,
    Image,
    NearDuplicates,
    NsfwSource,
    SourceKind,
    UploadRun,
    Visibility,
)
from imagineer_project.disk import disk_floor_check
from imagineer_project.errors import Invalid
from imagineer_project.lib.locks import lock_name
from imagineer_project.permissions import person
from imagineer_project.ratelimit import rate_limit_take_all
from imagineer_project.runs import run_enqueue

if TYPE_CHECKING:
    from django.contrib.auth.models import User

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class IngestResult:
    """What happened to one file: created, duplicate (an existing image, linked
    instead) or rejected; with the warnings of a file that was not rejected
    (`extension_mismatch` from inspection, `near_duplicate` from the policy),
    each a dict with at least `code` and `message`."""

    status: str
    filename: str
    image: Image | None = None
    code: str = ""
    reason: str = ""
    warnings: tuple[dict[str, Any], ...] = ()

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"filename": self.filename, "status": self.status}
        if self.image is not None:
            out["image_id"] = self.image.pk
        if self.status == "rejected":
            out["code"] = self.code
            out["reason"] = self.reason
        out["warnings"] = [dict(w) for w in self.warnings]
        return out

    def near_duplicate(self) -> dict[str, Any] | None:
        """The near_duplicate warning, if the policy found one."""
        return next((w for w in self.warnings if w["code"] == "near_duplicate"), None)


# --- near duplicates --------------------------------------------------------------


@dataclass
class NearDuplicatePolicy:
    """One door's near-duplicate rule over one batch of files (a request, an
    upload run, a scrape job): `mode` is a NearDuplicates value, `max_distance`
    the pHash distance (bits of 64) within which a library image is the same
    picture (IMAGINEER_NEAR_DUPLICATE_DISTANCE unless the door sets its own).

    The library's hashes are read once, on the first file that needs them, and
    every image the batch stores is added, so a batch also catches its own near
    duplicates. Images the batch replaced are never matched again.
    """

    mode: str = NearDuplicates.REPLACE_SMALLER
    max_distance: int | None = None
    index: HashIndex | None = None
    replaced: set[int] = field(default_factory=set)
    # What this batch stored: only these may be deleted when replaced.
    created: set[int] = field(default_factory=set)

    def __post_init__(self) -> None:
        if self.mode not in NearDuplicates.values:
            raise Invalid(
                f"near_duplicates must be one of {', '.join(NearDuplicates.values)}.",
                errors={"near_duplicates": "unknown choice"},
            )
        if self.max_distance is None:
            self.max_distance = settings.IMAGINEER_NEAR_DUPLICATE_DISTANCE

    def nearest(self, phash: int) -> tuple[Image, int] | None:
        """The nearest library image within the distance, and how far it is.
        Flat pictures are never near anything (see _is_flat)."""
        if _is_flat(phash):
            return None
        if self.index is None:
            self.index = library_index()
        for image_id, distance in self.index.nearest(phash, self.max_distance):
            if image_id in self.replaced:
                continue
            image = Image.objects.filter(pk=image_id).first()
            # None: gone since the index was read; look further.
            if image is not None and not _is_flat(image.phash):
                return image, distance
        return None

    def added(self, image: Image) -> None:
        self.created.add(image.pk)
        if self.index is not None:
            self.index.add(image.pk, image.phash)


# A pHash keeps the signs of 64 low frequencies against their median: a picture
# of one colour hashes to a single bit (0x8000000000000000) whatever the colour,
# and a few flat blocks to a handful, so two such pictures look "the same".
FLAT_HASH_BITS = 8


def _is_flat(phash: int) -> bool:
    """Whether a hash has too little structure to compare (fewer than
    FLAT_HASH_BITS of its 64 bits set, or of them clear)."""
    ones = (phash & 0xFFFF_FFFF_FFFF_FFFF).bit_count()
    return min(ones, 64 - ones) < FLAT_HASH_BITS


def near_duplicate_policy(
    mode: str | None = None, *, max_distance: int | None = None
) -> NearDuplicatePolicy:
    """The policy for one batch; `mode` None is the documented default
    (replace_smaller). Invalid for an unknown mode."""
    return NearDuplicatePolicy(
        mode or NearDuplicates.REPLACE_SMALLER, max_distance=max_distance
    )


def _near_warning(library: Image, distance: int, action: str, note: str) -> dict:
    return {
        "code": "near_duplicate",
        "image_id": library.pk,
        "distance": distance,
        "action": action,
        "message": f"Near duplicate of image #{library.pk} ({distance} bits "
        f"apart); {note}",
    }


def near_duplicate_replace(
    *,
    smaller: Image,
    larger: Image,
    album: Album | None,
    on_delete: Callable[[Image, Image], None] | None = None,
    may_delete: bool = True,
) -> bool:
    """`larger` takes `smaller`'s place (its position) in `album`; `smaller` is
    then deleted when no album holds it any more and `may_delete` (a door
    passes it only for a copy the same batch stored: an image the library held
    before, album or not, may be a dataset's, a set's or a generation's, and
    stays). `on_delete(smaller, larger)`
    runs just before that delete (the caller updates what it keeps about the
    smaller copy, e.g. the scraper's counters), after the apps registered in
    albums.extensions moved theirs (labeling: its labels). Returns whether it
    was deleted."""
    if album is not None:
        with transaction.atomic():
            Album.objects.select_for_update().filter(pk=album.pk).exists()
            there = AlbumImage.objects.filter(album=album, image=smaller)
            if AlbumImage.objects.filter(album=album, image=larger).exists():
                there.delete()
            else:
                there.update(image=larger)
            albums_recount([album.pk])
    if not may_delete or smaller.memberships.exists():
        return False
    from albums.extensions import image_replaced

    image_replaced(smaller, larger)
    if on_delete is not None:
        on_delete(smaller, larger)
    images_delete(images=[smaller])
    return True


def content_filename(name: str, fmt: str) -> str:
    """`name` with the extension its content has: content decides the format,
    so WebP bytes fetched as `photo.jpg` are kept as `photo.webp`."""
    path = PurePosixPath(name)
    extension = FILE_EXTENSION[fmt]
    suffix = path.suffix.lower()
    if EXTENSIONS.get(suffix) == fmt:
        return name
    if suffix in EXTENSIONS:
        return f"{name[: -len(suffix)]}.{extension}"
    return f"{name}.{extension}" if name else ""


# --- storage keys -----------------------------------------------------------------


def image_key(sha256: str, extension: str) -> str:
    return f"images/{sha256[:2]}/{sha256[2:4]}/{sha256}.{extension}"


def thumbnail_key(sha256: str, size: int) -> str:
    return f"thumbnails/{size}/{sha256[:2]}/{sha256[2:4]}/{sha256}.webp"


def _store(key: str, data: bytes) -> None:
    if not default_storage.exists(key):
        default_storage.save(key, ContentFile(data))


def image_files_store(inspected: InspectedImage) -> None:
    """Write an inspected image's original and thumbnails under their content
    keys (each durable on return, or at the end of the surrounding
    imagineer_project.lib.storage.durable_batch)."""
    _store(image_key(inspected.sha256, inspected.extension), inspected.data)
    for size, thumb in inspected.thumbnails.items():
        _store(thumbnail_key(inspected.sha256, size), thumb)


def image_prepare(
    *, data: bytes, filename: str | None
) -> InspectedImage | IngestResult:
    """image_ingest's first half, for callers that register images in batches
    (an upload run): inspect the bytes and write the files; a rejected file
    comes back as its IngestResult and leaves nothing behind. Inside a
    durable_batch the files are durable only once it ends: register them with
    image_store(files_stored=True) after that, never before."""
    display = safe_display_name(filename)
    try:
        inspected = inspect_image(data, display)
    except ImageRejected as exc:
        return IngestResult("rejected", display, code=exc.code, reason=exc.reason)
    image_files_store(inspected)
    return inspected


# --- images -----------------------------------------------------------------------


def forget_deleted_images(rows: Iterable[Any]) -> None:
    """Unsaved rows (an upload's results, a scrape's log entries) that name an
    image a later file of the same batch replaced and deleted: they keep their
    outcome without it, as SET_NULL leaves a row written before such a delete."""
    rows = list(rows)
    ids = {row.image_id for row in rows if row.image_id is not None}
    alive = set(Image.objects.filter(pk__in=ids).values_list("pk", flat=True))
    for row in rows:
        if row.image_id not in alive:
            row.image_id = None


@dataclass
class IngestBatch:
    """What a batch of image_store calls shares inside the caller's one
    transaction (an upload run's batch): the images the library already holds,
    by sha256, read with one query (`read_known`; the batch adds the ones it
    creates), and the album links, written by one album_add_images (`flush`,
    before the transaction commits) instead of one per image. Order is kept: a
    near-duplicate replacement flushes what came before it first."""

    album: Album
    added_by: User | None = None
    images: list[Image] = field(default_factory=list)
    known: dict[str, Image] | None = None

    def read_known(self, sha256s: Iterable[str]) -> None:
        self.known = {
            image.sha256: image
            for image in Image.objects.filter(sha256__in=list(set(sha256s)))
        }

    def add(self, image: Image) -> None:
        self.images.append(image)

    def flush(self) -> None:
        if self.images:
            album_add_images(
                album=self.album, images=self.images, added_by=self.added_by
            )
            self.images = []


def image_ingest(
    *,
    data: bytes,
    filename: str | None,
    source_kind: str,
    album: Album | None = None,
    uploaded_by: User | None = None,
    provenance: dict[str, Any] | None = None,
    near_duplicates: NearDuplicatePolicy | None = None,
) -> IngestResult:
    """Validate, store and register one image; link it into `album`.

    An exact duplicate (same sha256) is not stored again: the existing image is
    linked into the album and reported as a duplicate. With a `near_duplicates`
    policy (every door that takes files from people or sites), a near duplicate
    of a library image is handled and reported as image_store says. A rejected
    file leaves neither a file nor a row behind.
    """
    display = safe_display_name(filename)
    try:
        inspected = inspect_image(data, display)
    except ImageRejected as exc:
        return IngestResult("rejected", display, code=exc.code, reason=exc.reason)
    return image_store(
        inspected=inspected,
        filename=display,
        source_kind=source_kind,
        album=album,
        uploaded_by=uploaded_by,
        provenance=provenance,
        near_duplicates=near_duplicates,
    )


def image_store(
    *,
    inspected: InspectedImage,
    filename: str,
    source_kind: str,
    album: Album | None = None,
    uploaded_by: User | None = None,
    provenance: dict[str, Any] | None = None,
    near_duplicates: NearDuplicatePolicy | None = None,
    on_delete: Callable[[Image, Image], None] | None = None,
    files_stored: bool = False,
    batch: IngestBatch | None = None,
) -> IngestResult:
    """Register an already inspected image (or find its exact duplicate) and link
    it into `album`. For callers that inspect first to decide (the scraper).

    With a `near_duplicates` policy, a file within its distance of a library
    image #N carries a `near_duplicate` warning and the policy's mode decides:
    keep (store it too: created), skip (store nothing, link #N: duplicate), or
    replace_smaller (the one with more pixels stays: a smaller or equal file is
    skipped; a larger one is created and takes #N's place in `album`, #N going
    only when this batch stored it and no album holds it any more, see
    near_duplicate_replace).

    `files_stored`: the caller already made the files durable (image_prepare
    in a durable_batch that has ended), so they are not looked for again.
    `batch` (for `album`, inside the caller's transaction): the library's
    images are looked up in it, and the album link is left to its flush.
    """
    display = safe_display_name(filename)
    warnings = list(inspected.warnings)
    if batch is not None and batch.known is not None:
        existing = batch.known.get(inspected.sha256)
    else:
        existing = Image.objects.filter(sha256=inspected.sha256).first()
    near = None
    if existing is None and near_duplicates is not None:
        near = near_duplicates.nearest(inspected.phash)
    if existing is not None:
        image, created = existing, False
    elif near is not None and _skips(near_duplicates, near[0], inspected):
        library, distance = near
        larger = near_duplicates.mode == NearDuplicates.REPLACE_SMALLER
        note = (
            "the library's copy is as large or larger, so it is kept and linked"
            if larger
            else "not stored; the library's copy is linked instead"
        )
        warnings.append(_near_warning(library, distance, "skipped", note))
        image, created = library, False
    else:
        # With no near duplicate to handle first, the row and its album link
        # are written in one transaction: one commit per file, not two.
        if batch is not None:
            link = None  # linked with the rest of the caller's batch, below
        else:
            link, album = (album, None) if near is None else (None, album)
        image, created = _image_create(
            inspected,
            content_filename(display, inspected.format),
            source_kind,
            uploaded_by,
            provenance or {},
            link=link,
            files_stored=files_stored,
        )
        if created and near_duplicates is not None:
            near_duplicates.added(image)
        if batch is not None and batch.known is not None:
            batch.known[image.sha256] = image
        if near is not None:
            replacing = near_duplicates.mode == NearDuplicates.REPLACE_SMALLER
            if batch is not None and replacing:
                batch.flush()  # the batch's earlier images keep their places
                batch.known = None  # it may delete one: look up again from here
            warnings.append(
                _near_action(near_duplicates, near, image, album, on_delete)
            )
            if replacing:
                album = None  # it already holds #N's place there
    if album is not None and batch is not None:
        batch.add(image)
    elif album is not None:
        album_add_images(album=album, images=[image], added_by=uploaded_by)
    status = "created" if created else "duplicate"
    return IngestResult(status, display, image, warnings=tuple(warnings))


def _skips(
    policy: NearDuplicatePolicy, library: Image, inspected: InspectedImage
) -> bool:
    if policy.mode == NearDuplicates.SKIP:
        return True
    if policy.mode == NearDuplicates.REPLACE_SMALLER:
        return library.width * library.height >= inspected.width * inspected.height
    return False


def _near_action(
    policy: NearDuplicatePolicy,
    near: tuple[Image, int],
    image: Image,
    album: Album | None,
    on_delete: Callable[[Image, Image], None] | None,
) -> dict[str, Any]:
    """Keep both, or (replace_smaller, the new one larger) replace #N."""
    library, distance = near
    if policy.mode == NearDuplicates.KEEP:
        return _near_warning(library, distance, "kept", "both are kept")
    policy.replaced.add(library.pk)
    if album is not None:
        album_add_images(album=album, images=[library])  # so there is a place
    deleted = near_duplicate_replace(
        smaller=library,
        larger=image,
        album=album,
        on_delete=on_delete,
        may_delete=library.pk in policy.created,
    )
    note = f"this larger copy replaces it{' (deleted)' if deleted else ''}"
    warning = _near_warning(library, distance, "replaced", note)
    warning["deleted"] = deleted
    return warning


def _image_create(
    inspected: InspectedImage,
    display: str,
    source_kind: str,
    uploaded_by: User | None,
    provenance: dict[str, Any],
    *,
    link: Album | None = None,
    files_stored: bool = False,
) -> tuple[Image, bool]:
    """Store the files, then the row (linked into `link`, in the same
    transaction); an image another ingest stored meanwhile is reused."""
    # Files first, row second: a crash in between leaves a file that a later
    # ingest of the same content reuses, never a row without its file.
    if not files_stored:
        image_files_store(inspected)
    if link is None:
        return _image_row(inspected, display, source_kind, uploaded_by, provenance)
    with transaction.atomic():
        image, created = _image_row(
            inspected, display, source_kind, uploaded_by, provenance
        )
        album_add_images(album=link, images=[image], added_by=uploaded_by)
    return image, created


def _image_row(
    inspected: InspectedImage,
    display: str,
    source_kind: str,
    uploaded_by: User | None,
    provenance: dict[str, Any],
) -> tuple[Image, bool]:
    try:
        with transaction.atomic():  # a savepoint: only the insert may race
            image = Image.objects.create(
                sha256=inspected.sha256,
                file=image_key(inspected.sha256, inspected.extension),
                width=inspected.width,
                height=inspected.height,
                format=inspected.format,
                bytes=len(inspected.data),
                is_animated=inspected.is_animated,
                phash=inspected.phash,
                original_filename=display,
                source_kind=source_kind,
                uploaded_by=person(uploaded_by),
                **provenance,
            )
        return image, True
    except IntegrityError:
        # A concurrent ingest of the same bytes won the race; reuse its row.
        return Image.objects.get(sha256=inspected.sha256), False


def image_thumbnail_key(image: Image, size: int) -> str:
    """The storage key of a thumbnail, rendering it on first use.

    Sizes not made at ingest (and any that went missing) are rendered from the
    stored original; the key is the content hash, so a race writes the same bytes.
    """
    key = thumbnail_key(image.sha256, size)
    if not default_storage.exists(key):
        with default_storage.open(image.file.name, "rb") as fh:
            data = fh.read()
        _store(key, render_thumbnail(data, image.format, size))
    return key


def image_update(*, image: Image, **fields: Any) -> Image:
    """Set triage fields (is_nsfw, visibility, review_status)."""
    allowed = {"is_nsfw", "visibility", "review_status"}
    changes = {k: v for k, v in fields.items() if k in allowed and v is not None}
    if "is_nsfw" in changes:
        changes["nsfw_source"] = NsfwSource.HUMAN
    for name, value in changes.items():
        setattr(image, name, value)
    if changes:
        with transaction.atomic():
            image.save(update_fields=[*changes, "updated"])
            if {"is_nsfw", "visibility"} & changes.keys():
                albums_recount(albums_holding([image.pk]))
    return image


def images_set(*, image_ids: Iterable[int], **fields: Any) -> int:
    """Bulk triage: set fields on many images at once (a person's decision)."""
    if "is_nsfw" in fields:
        fields["nsfw_source"] = NsfwSource.HUMAN
    ids = list(image_ids)
    with transaction.atomic():
        count = Image.objects.filter(pk__in=ids).update(
            **fields, updated=timezone.now()
        )
        if {"is_nsfw", "visibility"} & fields.keys():
            albums_recount(albums_holding(ids))
    return count


def images_delete(*, images: Iterable[Image]) -> int:
    """Delete images with their labels, memberships, files and thumbnails."""
    images = list(images)
    keys = [k for im in images for k in _image_keys(im)]
    with transaction.atomic():
        holding = albums_holding(im.pk for im in images)
        for start in range(0, len(images), 500):  # under SQLite's variable limit
            chunk = images[start : start + 500]
            Image.objects.filter(pk__in=[im.pk for im in chunk]).delete()
        albums_recount(holding)
    # Files go only once the rows are surely gone (a rollback keeps both).
    transaction.on_commit(lambda: _delete_files(keys))
    return len(images)


def _image_keys(image: Image) -> list[str]:
    sizes = settings.IMAGINEER_THUMBNAIL_SIZES
    return [image.file.name, *(thumbnail_key(image.sha256, s) for s in sizes)]


def _delete_files(keys: list[str]) -> None:
    for key in keys:
        try:
            default_storage.delete(key)
        except OSError:
            logger.warning(
                "Could not delete %s; a storage reconcile will catch it", key
            )


# --- albums -----------------------------------------------------------------------


def _unique_slug(name: str) -> str:
    # "Decks/card-deck-antique" -> decks-card-deck-antique, not deckscard-...
    base = slugify(name.replace("/", " "))[:200] or "album"
    slug, n = base, 2
    while Album.objects.filter(slug=slug).exists():
        slug, n = f"{base}-{n}", n + 1
    return slug


def album_create(
    *,
    name: str,
    description: str = "",
    trigger_word: str = "",
    source_kind: str = Album.Kind.MANUAL,
    visibility: str = Visibility.PUBLIC,
    created_by: User | None = None,
    slug: str = "",
) -> Album:
    """A new album. Its slug is `slug` when one is given (Invalid when taken),
    else made from the name, numbered past the slugs already taken."""
    name = name.strip()
    if not name:
        raise Invalid("An album needs a name.", errors={"name": "required"})
    if slug and Album.objects.filter(slug=slug).exists():
        raise Invalid(f"The slug {slug!r} is taken.", errors={"slug": "taken"})
    for _ in range(5):
        try:
            with transaction.atomic():
                return Album.objects.create(
                    name=name[:200],
                    slug=slug or _unique_slug(name),
                    description=description,
                    trigger_word=trigger_word.strip(),
                    source_kind=source_kind,
                    visibility=visibility,
                    created_by=person(created_by),
                )
        except IntegrityError:  # a concurrent create took the slug; pick again
            continue
    raise Invalid(f"Could not find a free slug for {name!r}.")


def album_get_or_create(
    *,
    name: str,
    source_kind: str = Album.Kind.UPLOAD,
    created_by: User | None = None,
    same_kind_only: bool = False,
    visibility: str = Visibility.PUBLIC,
) -> Album:
    """The oldest album named `name` (only one of `source_kind` when
    `same_kind_only`), made with `source_kind` and `visibility` when there is
    none; an existing album keeps its own visibility.

    Race-free: the name is locked for the transaction before the lookup, so
    twenty concurrent uploads to one new album name make one album.
    """
    name = name.strip()[:200]
    with transaction.atomic():
        lock_name(f"album-name:{name}")
        albums = Album.objects.filter(name=name)
        if same_kind_only:
            albums = albums.filter(source_kind=source_kind)
        existing = albums.order_by("id").first()
        return existing or album_create(
            name=name,
            source_kind=source_kind,
            visibility=visibility,
            created_by=created_by,
        )


def album_update(*, album: Album, **fields: Any) -> Album:
    """Change an album's own fields (its images through album_add_images and
    album_remove_images). A new slug must be free."""
    allowed = {
        "name",
        "slug",
        "description",
        "trigger_word",
        "visibility",
        "source_kind",
    }
    slug = fields.get("slug")
    if slug and Album.objects.filter(slug=slug).exclude(pk=album.pk).exists():
        raise Invalid(f"The slug {slug!r} is taken.", errors={"slug": "taken"})
    changes = {k: v for k, v in fields.items() if k in allowed and v is not None}
    for name, value in changes.items():
        setattr(album, name, value)
    if changes:
        album.save(update_fields=[*changes, "updated"])
    return album


def album_add_images(
    *, album: Album, images: Iterable[Image], added_by: User | None = None
) -> int:
    """Append images to the album in the given order; ones already in it stay put.

    The album's row is locked first, so two concurrent adds queue: the second
    sees what the first added and numbers after it (positions never repeat;
    a unique constraint holds them to it).
    """
    ids = list(dict.fromkeys(im.pk for im in images))
    with transaction.atomic():
        Album.objects.select_for_update().filter(pk=album.pk).exists()
        present = set(
            AlbumImage.objects.filter(album=album, image_id__in=ids).values_list(
                "image_id", flat=True
            )
        )
        new_ids = [i for i in ids if i not in present]
        if not new_ids:
            return 0
        start = (
            AlbumImage.objects.filter(album=album).aggregate(m=Max("position"))["m"]
            or 0
        ) + 1
        user = person(added_by)
        AlbumImage.objects.bulk_create(
            [
                AlbumImage(album=album, image_id=i, position=start + n, added_by=user)
                for n, i in enumerate(new_ids)
            ]
        )
        # Appended after every member: counted as deltas, under the lock.
        album_count_appended(album_id=album.pk, image_ids=new_ids)
    return len(new_ids)


def album_add_image_ids(
    *, album: Album, image_ids: list[int], added_by: User | None = None
) -> int:
    """album_add_images by id; Invalid naming the ids that are no image (and
    nothing added)."""
    found = set(Image.objects.filter(pk__in=image_ids).values_list("pk", flat=True))
    missing = [i for i in dict.fromkeys(image_ids) if i not in found]
    if missing:
        raise Invalid(
            f"{len(missing)} image id(s) do not exist.",
            code="unknown_images",
            details={"unknown_ids": missing},
        )
    # album_add_images reads only .pk: no need to load the rows just checked.
    images = [Image(pk=pk) for pk in image_ids]
    return album_add_images(album=album, images=images, added_by=added_by)


def album_remove_images(*, album: Album, image_ids: Iterable[int]) -> int:
    """Take images out of the album (they stay in the library)."""
    with transaction.atomic():
        deleted, _ = AlbumImage.objects.filter(
            album=album, image_id__in=list(image_ids)
        ).delete()
        if deleted:
            albums_recount([album.pk])
    return deleted


def album_release_images(*, album: Album, image_ids: Iterable[int]) -> dict[str, int]:
    """Take images out of `album` and delete those no other album holds (files
    and thumbnails too): undoing what one job put into an album it does not
    own. Counts as album_delete does."""
    ids = list(image_ids)
    with transaction.atomic():
        removed = 0
        for start in range(0, len(ids), 500):  # SQLite's variable limit
            chunk = ids[start : start + 500]
            removed += album_remove_images(album=album, image_ids=chunk)
        orphans = [
            image
            for start in range(0, len(ids), 500)
            for image in Image.objects.filter(pk__in=ids[start : start + 500]).exclude(
                pk__in=AlbumImage.objects.values("image_id")
            )
        ]
        images_delete(images=orphans)
    return {"images_deleted": len(orphans), "images_kept": removed - len(orphans)}


def album_delete(*, album: Album, keep_images: bool = False) -> dict[str, int]:
    """Delete an album. Images that no other album holds go too, unless
    `keep_images`; images other albums hold always stay."""
    with transaction.atomic():
        members = album.memberships.count()
        orphans = (
            []
            if keep_images
            else list(
                Image.objects.filter(
                    pk__in=AlbumImage.objects.filter(album=album).values("image_id")
                ).exclude(
                    pk__in=AlbumImage.objects.exclude(album=album).values("image_id")
                )
            )
        )
        album.delete()
        images_delete(images=orphans)
    return {"images_deleted": len(orphans), "images_kept": members - len(orphans)}


__all__ = ["IngestResult", "SourceKind", "image_ingest"]


# --- uploads through the API ------------------------------------------------------

# Zip archives are unpacked only by the bulk upload worker (albums/runs.py).
_ZIP_MAGIC = b"PK\x03\x04"


@dataclass(frozen=True)
class UploadOutcome:
    """The answer to one upload request: a result per file, and the upload run
    that decodes its heavy files (status "queued" in `results`), if any."""

    results: list[IngestResult]
    run: UploadRun | None = None


def images_upload(
    *,
    files: Iterable[Any],
    album: Album,
    uploaded_by: User | None = None,
    near_duplicates: str | None = None,
    rate_limited: bool = False,
) -> UploadOutcome:
    """Ingest the files of one request into `album`, each on its own: a bad file
    is reported as rejected and never stops the others. Each file is read through
    a cap one byte over the limit, so an oversized one is rejected as too_large
    without being read whole. `near_duplicates`: a NearDuplicates mode (None:
    the default), one policy for the whole request.

    Only header checks happen for a file whose header claims more pixels (all
    frames) than IMAGINEER_UPLOAD_INLINE_PIXELS, or that would take the pixels
    the request decodes past IMAGINEER_UPLOAD_REQUEST_PIXELS: it is "queued"
    and goes to one upload run for the worker to decode. Refused whole below
    the disk floor, before any file is stored (a heavy one would go to an
    upload run, which refuses then too). With `rate_limited` (the API), the
    files and their bytes count against `uploaded_by`'s upload_files and
    upload_bytes rate limits first (RateLimitExceeded)."""
    disk_floor_check("media")
    files = list(files)
    if rate_limited:
        upload_rate_check(files=files, user=uploaded_by)
    policy = near_duplicate_policy(near_duplicates)
    heavy: list[ContentFile] = []
    budget = _InlineBudget()
    results = [
        _upload_one(upload, album, uploaded_by, policy, heavy, budget)
        for upload in files
    ]
    run = None
    if heavy:
        run = upload_run_create(
            files=heavy,
            album=album,
            uploaded_by=uploaded_by,
            near_duplicates=policy.mode,
        )
    return UploadOutcome(results, run)


@dataclass
class _InlineBudget:
    """The pixels one request may still decode itself."""

    left: int = field(default_factory=lambda: settings.IMAGINEER_UPLOAD_REQUEST_PIXELS)

    def takes(self, pixels: int) -> bool:
        """Whether the request decodes a file of `pixels` (and counts them)."""
        if pixels > min(settings.IMAGINEER_UPLOAD_INLINE_PIXELS, self.left):
            return False
        self.left -= pixels
        return True


def _upload_one(
    upload: Any,
    album: Album,
    uploaded_by: User | None,
    policy: NearDuplicatePolicy,
    heavy: list[ContentFile],
    budget: _InlineBudget,
) -> IngestResult:
    name = safe_display_name(upload.name)
    data = upload.read(settings.IMAGINEER_MAX_UPLOAD_BYTES + 1)
    fits = len(data) <= settings.IMAGINEER_MAX_UPLOAD_BYTES
    if fits and not budget.takes(decode_pixels(data)):
        heavy.append(ContentFile(data, name=name))
        return IngestResult("queued", name)
    if name.lower().endswith(".zip") or data.startswith(_ZIP_MAGIC):
        return IngestResult(
            "rejected",
            name,
            code="archive",
            reason="Zip archives are unpacked by the bulk upload "
            "(POST /api/images/bulk-upload).",
        )
    try:
        return image_ingest(
            data=data,
            filename=upload.name,
            source_kind=SourceKind.UPLOAD,
            album=album,
            uploaded_by=uploaded_by,
            near_duplicates=policy,
        )
    except Exception:
        logger.exception("Could not store the upload %r", name)
        return IngestResult(
            "rejected",
            name,
            code="error",
            reason="The file could not be stored; quote the trace id.",
        )


def upload_rate_check(*, files: list[Any], user: User | None) -> None:
    """Count `files` (one each) and their bytes against `user`'s upload_files
    and upload_bytes rate limits; RateLimitExceeded, counting neither, when
    they do not fit. A zip counts as one file of its size."""
    rate_limit_take_all(
        {
            "upload_files": len(files),
            "upload_bytes": sum(getattr(f, "size", 0) or 0 for f in files),
        },
        user=user,
    )


# --- bulk uploads -------------------------------------------------------------------


SIDECAR_MAX_BYTES = 64 * 1024  # a caption; more is cut, not refused
SIDECAR_ALONE = "sidecar_alone"  # a staged .txt with no image beside it


def upload_sidecars(names: list[str]) -> tuple[dict[int, list[int]], set[int]]:
    """The folder import's rule for the files of one upload, by their paths
    in the chosen folder (else their names): a file beside an image, with the
    same path but for a non-image extension, is that image's sidecar (`card.txt`
    beside `card.png`). Returns {image index: its sidecars' indexes} and the
    indexes of `.txt` files with no image beside them."""
    stems: dict[str, int] = {}
    for n, name in enumerate(names):
        path = PurePosixPath(name)
        if path.suffix.lower() in EXTENSIONS:
            stems.setdefault(str(path.with_suffix("")), n)
    pairs: dict[int, list[int]] = {}
    alone: set[int] = set()
    for n, name in enumerate(names):
        path = PurePosixPath(name)
        if path.suffix.lower() in EXTENSIONS or path.suffix.lower() == ".zip":
            continue
        image = stems.get(str(path.with_suffix("")))
        if image is not None:
            pairs.setdefault(image, []).append(n)
        elif path.suffix.lower() == ".txt":
            alone.add(n)
    return pairs, alone


def _upload_path(path: str) -> str:
    """A path the browser sent for a file of a chosen folder, for pairing and
    display: forward slashes, printable, no empty, `.` or `..` parts."""
    parts = path.replace("\\", "/").split("/")
    kept = ["".join(c for c in p if c.isprintable()) for p in parts]
    return "/".join(p for p in kept if p not in ("", ".", ".."))[:500]


def _sidecar_text(upload: File) -> str:
    upload.seek(0)
    data = upload.read(SIDECAR_MAX_BYTES)
    return data.decode("utf-8", errors="replace")


def upload_run_create(
    *,
    files: Iterable[File],
    album: Album,
    uploaded_by: User | None = None,
    near_duplicates: str | None = None,
    rate_limited: bool = False,
    paths: list[str] | None = None,
) -> UploadRun:
    """Stage uploaded files and queue their ingest; returns the run to watch.
    Raises InsufficientStorage, staging nothing, when media's disk is below
    DISK_FREE_FLOOR_BYTES; with `rate_limited` (the API and the admin),
    RateLimitExceeded past the upload_files or upload_bytes rate limit.

    `paths`, one per file: where each sat in the folder the user chose (the
    browser's relative paths; Django keeps only a file's base name). A file
    beside an image with the same stem (a `.txt` caption: upload_sidecars) is
    staged as text with its image, for the sidecar readers, as the folder
    import reads it; a `.txt` with no image beside it is staged to be
    reported, not imported."""
    mode = near_duplicate_policy(near_duplicates).mode  # Invalid before staging
    # Refused below the floor before a byte is staged (InsufficientStorage);
    # remote storage (S3) has no local floor.
    disk_floor_check("media")
    files = list(files)
    if rate_limited:
        upload_rate_check(files=files, user=uploaded_by)
    batch = uuid.uuid4().hex
    if paths is not None and len(paths) == len(files):
        names = [_upload_path(p) or f.name for p, f in zip(paths, files, strict=True)]
    else:
        names = [safe_display_name(f.name) for f in files]
    pairs, alone = upload_sidecars(names)
    beside = {n for sidecars in pairs.values() for n in sidecars}
    staged = []
    for n, upload in enumerate(files):
        if n in beside:
            continue  # staged as text with its image, below
        key = default_storage.save(f"staging/uploads/{batch}/{n:06d}", upload)
        item: dict[str, Any] = {"key": key, "name": names[n]}
        if n in pairs:
            item["sidecars"] = {
                PurePosixPath(names[s]).suffix.lower(): _sidecar_text(files[s])
                for s in pairs[n]
            }
        if n in alone:
            item[SIDECAR_ALONE] = True
        staged.append(item)
    with transaction.atomic():
        run = UploadRun.objects.create(
            album=album,
            uploaded_by=person(uploaded_by),
            staged_files=staged,
            near_duplicates=mode,
            # Counted now, so the page reads "0 of 13 files" from the start.
            progress_total=len(staged),
            message=f"{len(staged)} file(s) waiting for a worker",
        )
        run_enqueue(run)
    return run


def folder_import_create(
    *,
    folder: Path,
    album: Album,
    uploaded_by: User | None = None,
    enqueue: bool = True,
    near_duplicates: str | None = None,
) -> UploadRun:
    """An upload run that imports every image under `folder` (on the worker's
    machine) into `album`; files beside an image go to the sidecar readers
    (a `.txt` caption). Raises Invalid when `folder` is not a folder, and
    InsufficientStorage below the disk floor (DISK_FREE_FLOOR_BYTES)."""
    mode = near_duplicate_policy(near_duplicates).mode
    root = Path(folder).expanduser().resolve()
    if not root.is_dir():
        raise Invalid(f"{folder} is not a folder.", errors={"folder": "not a folder"})
    disk_floor_check("media")
    with transaction.atomic():
        run = UploadRun.objects.create(
            album=album,
            uploaded_by=person(uploaded_by),
            source_folder=str(root),
            near_duplicates=mode,
            message="Waiting for the worker",
        )
        if enqueue:
            run_enqueue(run)
    return run


def upload_run_discard(run: UploadRun) -> None:
    """Remove the staged files of a run: it ingested them, or will not."""
    for item in run.staged_files:
        default_storage.delete(item["key"])
