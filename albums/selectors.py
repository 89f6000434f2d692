"""Reads for albums, images and upload runs, shared by the API and the pages.

Every read takes the caller's user and goes through `visible_to`, so what a
visitor may see is decided in one place (the querysets in models.py). Items a
caller may not see raise the same 404 as items that do not exist.
"""

from __future__ import annotations

import functools
import logging
from typing import TYPE_CHECKING, Any

from django.db import connection
from django.db.models import F, OuterRef, Prefetch, Q, Subquery

from albums.counts import PUBLIC_MEMBER
from albums.models import Album, AlbumImage, Image, UploadRun
from imagineer_project.errors import NotFound

if TYPE_CHECKING:
    from imagineer_project.permissions import Viewer

logger = logging.getLogger(__name__)

COVER_COUNT = 4


# --- albums -----------------------------------------------------------------------


def album_list(*, user: Viewer) -> Any:
    """Albums the user may see, each with its visible image count and covers."""
    return _with_summary(Album.objects.visible_to(user), user)


def album_get(*, user: Viewer, ref: str | int, summary: bool = False) -> Album:
    """One album by id or slug. A slug made only of digits ("2024") is still
    found; an album whose id is that number wins."""
    albums = Album.objects.visible_to(user)
    if summary:
        albums = _with_summary(albums, user)
    ref = str(ref)
    match = Q(slug=ref)
    if ref.isascii() and ref.isdigit():
        match |= Q(pk=int(ref))
    found = sorted(albums.filter(match), key=lambda album: str(album.pk) != ref)
    if not found:
        raise NotFound(f"Album {ref} not found.")
    return found[0]


def sees_everything(user: Viewer) -> bool:
    """Staff see every image; others what Image.objects.public allows."""
    return bool(getattr(user, "is_staff", False) and user.is_active)


def _with_summary(albums: Any, user: Viewer) -> Any:
    """Annotate `shown_count` and `cover_0..3` (image ids) from the stored
    counts and covers (albums.counts): no count per request. Covers past the
    first are LIMIT 1 OFFSET k seeks on the (album, position, id) index."""
    staff = sees_everything(user)
    members = AlbumImage.objects.filter(album=OuterRef("pk"))
    if not staff:
        # Visitors see only public albums, where this is Image.objects.public.
        members = members.filter(PUBLIC_MEMBER)
    in_order = members.order_by("position", "id").values("image_id")
    covers = {
        f"cover_{k}": Subquery(in_order[k : k + 1]) for k in range(1, COVER_COUNT)
    }
    return albums.annotate(
        shown_count=F("image_count" if staff else "public_image_count"),
        cover_0=F("cover" if staff else "public_cover"),
        **covers,
    )


def album_tiles(*, album: Album, staff: bool) -> Any:
    """The album's images as its page shows them, in album order: tuples of
    (id, is_nsfw, visibility, original_filename), no model objects. Visitors
    reach only public albums, where Image.objects.public is PUBLIC_MEMBER."""
    members = AlbumImage.objects.filter(album=album)
    if not staff:
        members = members.filter(PUBLIC_MEMBER)
    return members.order_by("position", "id").values_list(*TILE_FIELDS)


# What a tile on an album page shows of an image (views.tiles_html).
TILE_FIELDS = (
    "image_id",
    "image__is_nsfw",
    "image__visibility",
    "image__original_filename",
)


def album_images(*, user: Viewer, album: Album) -> Any:
    """The album's images the user may see, with their place in album order
    (`position`, `membership_id`): paginate on those two keys."""
    return (
        Image.objects.visible_to(user)
        .filter(memberships__album=album)
        .annotate(
            position=F("memberships__position"), membership_id=F("memberships__id")
        )
    )


# --- images -----------------------------------------------------------------------


def image_list(
    *,
    user: Viewer,
    album: Album | None = None,
    nsfw: bool | None = None,
    review_status: str | None = None,
    source_kind: str | None = None,
    q: str | None = None,
) -> Any:
    images = Image.objects.visible_to(user)
    if album is not None:
        images = images.filter(memberships__album=album)
    if nsfw is not None:
        images = images.filter(is_nsfw=nsfw)
    if review_status:
        images = images.filter(review_status=review_status)
    if source_kind:
        images = images.filter(source_kind=source_kind)
    if q:
        # A subquery rather than a join: an image with three matching labels is
        # still one row. Labels belong to the labeling app above this one; the
        # image's `labels` relation reaches them without importing it.
        labelled = Image.objects.filter(labels__text__icontains=q).values("pk")
        images = images.filter(
            Q(original_filename__icontains=q)
            | Q(source_url__icontains=q)
            | Q(pk__in=labelled)
        )
    return images


def image_visible(*, user: Viewer, image_id: int) -> Image | None:
    """One image the user may see, or None; what
    `Image.objects.visible_to(user).filter(pk=image_id).first()` returns, read
    with SQL compiled once per process: compiling the visibility rule's nested
    EXISTS took ~1 ms of every image page, four times the query itself."""
    sql, params, slot = _image_by_pk_sql(sees_everything(user), connection.vendor)
    bound = list(params)
    bound[slot] = image_id
    return next(iter(Image.objects.raw(sql, bound)), None)


_PK_MARKER = -7_654_321_987_654_321  # an id no row has, only while compiling


@functools.lru_cache(maxsize=4)
def _image_by_pk_sql(staff: bool, vendor: str) -> tuple[str, tuple[Any, ...], int]:
    """The SQL of "the visible image with this id", its parameters, and
    where among them the id goes."""
    images = Image.objects.all() if staff else Image.objects.public()
    sql, params = images.filter(pk=_PK_MARKER).query.sql_with_params()
    slots = [n for n, p in enumerate(params) if p == _PK_MARKER]
    assert len(slots) == 1, sql
    return sql, tuple(params), slots[0]


def image_get(*, user: Viewer, image_id: int, detail: bool = False) -> Image:
    """One image the user may see; with `detail`, its labels and the albums
    (visible to the user) that hold it, in two more queries."""
    images = Image.objects.visible_to(user)
    if detail:
        # Labels come in their model's order (image, kind, id).
        images = images.prefetch_related(
            "labels",
            Prefetch(
                "albums",
                queryset=Album.objects.visible_to(user).order_by("id"),
                to_attr="visible_albums",
            ),
        )
    image = images.filter(pk=image_id).first()
    if image is None:
        raise NotFound(f"Image {image_id} not found.")
    return image


# --- upload runs ------------------------------------------------------------------


def upload_run_list() -> Any:
    # The per-file results can run to thousands of entries; lists leave them out.
    return UploadRun.objects.select_related("album").defer("results", "staged_files")


def upload_run_detail_rows() -> Any:
    return UploadRun.objects.select_related("album").defer("results")


def upload_run_results(run: UploadRun, limit: int | None = None) -> list[dict]:
    """The run's per-file results in file order (its UploadFile rows, the
    first `limit`), each as the API shows it: filename, status, and image_id,
    code, reason and warnings where they apply. One query."""
    rows = run.files.order_by("position").values(
        "filename", "status", "image_id", "code", "reason", "warnings"
    )
    return [upload_file_result(row) for row in rows[:limit]]


def upload_file_result(row: dict) -> dict:
    out = {"filename": row["filename"], "status": row["status"]}
    if row["image_id"] is not None:
        out["image_id"] = row["image_id"]
    if row["status"] == "rejected":
        out["code"] = row["code"]
        out["reason"] = row["reason"]
    out["warnings"] = row["warnings"]
    return out
