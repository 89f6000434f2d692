"""Reads for albums, images and upload runs, shared by the API and the pages.

Every read takes the caller's user and goes through `visible_to`, so what a
visitor may see is decided in one place (the querysets in models.py). Items a
caller may not see raise the same 404 as items that do not exist.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from django.db import connection
from django.db.models import F, OuterRef, Prefetch, Q, Subquery

from albums.counts import PUBLIC_MEMBER
from albums.extensions import (
    album_page_annotations,
    image_page_annotations,
    registry,
)
from albums.models import Album, AlbumImage, Image, UploadRun
from imagineer_project.errors import NotFound
from imagineer_project.lib.prepared import fetch_prepared

if TYPE_CHECKING:
    from imagineer_project.permissions import Viewer

logger = logging.getLogger(__name__)

COVER_COUNT = 4


# --- albums -----------------------------------------------------------------------


def album_list(*, user: Viewer, cover_flags: bool = False) -> Any:
    """Albums the user may see, each with its visible image count and covers;
    with `cover_flags`, also `cover_<k>_nsfw`, each cover's NSFW flag (None
    where the cover has no image), so a page needs no query for its covers."""
    albums = _with_summary(Album.objects.visible_to(user), user)
    if cover_flags:
        albums = albums.annotate(
            **{
                f"cover_{k}_nsfw": Subquery(
                    Image.objects.filter(pk=OuterRef(f"cover_{k}")).values("is_nsfw")
                )
                for k in range(COVER_COUNT)
            }
        )
    return albums


def album_list_head(*, user: Viewer, count: int) -> list[Album]:
    """The first `count` albums of `album_list(cover_flags=True)`, newest
    first as the gallery shows them: one query, its SQL compiled once."""
    return raw_once(_album_list_head, sees_everything(user), None, count)


def _album_list_head(staff: bool, count: int) -> Any:
    albums = album_list(user=_VIEWERS[staff], cover_flags=True)
    return albums.order_by("-id")[:count]


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


def _album_by_slug(staff: bool) -> Any:
    return Album.objects.visible_to(_VIEWERS[staff]).filter(slug=TEXT_SLOT)


def album_for_page(*, user: Viewer, slug: str) -> Album | None:
    """The album with this slug if the user may see it, with what the album
    page's parts read from it (their flags,
    albums.extensions.album_page_annotations) in the same query, compiled once."""
    parts = tuple(sorted(registry.album_page))  # compiled again if they change
    found = raw_once(_album_for_page, sees_everything(user), slug, parts)
    return found[0] if found else None


def _album_for_page(staff: bool, parts: tuple[str, ...]) -> Any:
    return _album_by_slug(staff).annotate(**album_page_annotations())


class AlbumTiles:
    """The album's images as its page shows them, in album order: tuples of
    (id, is_nsfw, visibility, original_filename), no model objects. A
    sequence that Paginator slices: each slice is one query, compiled once per
    page position. Visitors reach only public albums, where
    Image.objects.public is PUBLIC_MEMBER."""

    def __init__(self, *, album: Album, staff: bool) -> None:
        self.album_id = album.pk
        self.staff = staff

    def __getitem__(self, rows: slice) -> list[tuple]:
        return rows_once(_album_tiles, self.staff, self.album_id, rows.start, rows.stop)


def _album_tiles(staff: bool, start: int, stop: int) -> Any:
    members = AlbumImage.objects.filter(album_id=SLOT)
    if not staff:
        members = members.filter(PUBLIC_MEMBER)
    return members.order_by("position", "id").values_list(*TILE_FIELDS)[start:stop]


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


def newest_images(
    *, user: Viewer, columns: tuple[str, ...], before: int | None, count: int
) -> list[tuple]:
    """The first `count` images of `image_list(user=user)` (no filters),
    newest first, those with an id below `before` when it is given: tuples of
    `columns`, with SQL compiled once (rows_once)."""
    staff = sees_everything(user)
    return rows_once(_newest_images, staff, before, columns, before is not None, count)


def _newest_images(
    staff: bool, columns: tuple[str, ...], after_cursor: bool, count: int
) -> Any:
    images = image_list(user=_VIEWERS[staff]).order_by("-id")
    if after_cursor:
        images = images.filter(pk__lt=SLOT)
    return images.values_list(*columns)[:count]


def image_for_page(*, user: Viewer, image_id: int) -> Image | None:
    """One image the user may see, or None: what
    `Image.objects.visible_to(user).filter(pk=image_id).first()` returns, with
    what the image page's parts read from it (their flags,
    albums.extensions.image_page_annotations) in the same query. The SQL is
    compiled once per process: compiling the visibility rule's nested EXISTS
    took ~1 ms of every image page, four times the query itself."""
    parts = tuple(sorted(registry.image_page))  # compiled again if they change
    found = raw_once(_image_for_page, sees_everything(user), image_id, parts)
    return found[0] if found else None


def _image_for_page(staff: bool, parts: tuple[str, ...]) -> Any:
    return _visible_image(staff).annotate(**image_page_annotations())


def image_albums(*, user: Viewer, image: Image) -> list[Album]:
    """The albums holding `image` that the user may see, by name (their name
    and slug only; SQL compiled once)."""
    return raw_once(_image_albums, sees_everything(user), image.pk)


def _image_albums(staff: bool) -> Any:
    albums = Album.objects.visible_to(_VIEWERS[staff]).filter(memberships__image=SLOT)
    return albums.order_by("name").only("name", "slug")


def _visible_image(staff: bool) -> Any:
    return Image.objects.visible_to(_VIEWERS[staff]).filter(pk=SLOT)


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


# --- SQL compiled once ------------------------------------------------------------

# Stand for a request's value (an id, a slug) while a query is compiled once;
# no row has them. The visitor and the staff member it is compiled for.
SLOT = -7_654_321_987_654_321
TEXT_SLOT = "\x00slot\x00"
_VIEWERS = {
    False: SimpleNamespace(is_staff=False, is_active=True, is_authenticated=False),
    True: SimpleNamespace(is_staff=True, is_active=True, is_authenticated=True),
}


def rows_once(
    build: Callable[..., Any], staff: bool, value: Any = None, *shape: Any
) -> list[tuple]:
    """Like raw_once, for a `values_list` queryset: its tuples, converted as
    the ORM converts them (booleans and datetimes on every database)."""
    compiler, rows = _run_once(build, staff, value, shape)
    return list(compiler.results_iter(results=[rows], tuple_expected=True))


def raw_once(
    build: Callable[..., Any], staff: bool, value: Any = None, *shape: Any
) -> list[Any]:
    """The model objects of the queryset `build(staff, *shape)` (annotations
    included, as the queryset gives them), read with SQL the ORM compiled once
    per process for those arguments and, on PostgreSQL, planned once per
    connection (imagineer_project.lib.prepared). Where `build` put SLOT or
    TEXT_SLOT, `value` goes. For the pages' hot queries: Django compiles a
    queryset anew on every request, and PostgreSQL plans it anew; for these
    both cost more than running them. No select_related (one model per row)."""
    compiler, rows = _run_once(build, staff, value, shape)
    select, klass_info = compiler.select, compiler.klass_info
    fields = klass_info["select_fields"]
    start, stop = fields[0], fields[-1] + 1
    names = [column[0].target.attname for column in select[start:stop]]
    annotations = compiler.annotation_col_map.items()
    model, db = klass_info["model"], compiler.using
    found = []
    for row in compiler.results_iter(results=[rows]):
        instance = model.from_db(db, names, row[start:stop])
        for name, column in annotations:
            setattr(instance, name, row[column])
        found.append(instance)
    return found


def _run_once(
    build: Callable[..., Any], staff: bool, value: Any, shape: tuple[Any, ...]
) -> tuple[Any, list[tuple]]:
    compiler, sql, bound = _bind(build, staff, value, shape)
    return compiler, fetch_prepared(sql, bound)


def _bind(
    build: Callable[..., Any], staff: bool, value: Any, shape: tuple[Any, ...]
) -> tuple[Any, str, list[Any]]:
    compiler, sql, params, slots = _compiled(build, staff, shape, connection.vendor)
    bound = list(params)
    for slot in slots:
        bound[slot] = value
    return compiler, sql, bound


@functools.lru_cache(maxsize=128)
def _compiled(
    build: Callable[..., Any], staff: bool, shape: tuple[Any, ...], vendor: str
) -> tuple[Any, str, tuple[Any, ...], tuple[int, ...]]:
    """The compiler (kept: it knows the columns' converters), SQL and
    parameters of `build(staff, *shape)`, and where the request's value goes."""
    queryset = build(staff, *shape)
    compiler = queryset.query.get_compiler(using=queryset.db)
    sql, params = compiler.as_sql()
    slots = tuple(n for n, p in enumerate(params) if p in (SLOT, TEXT_SLOT))
    return compiler, sql, tuple(params), slots


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
