"""Each album's stored image counts and covers (Album.image_count,
public_image_count, cover, public_cover), kept by the services that change
membership, an image's visibility or NSFW flag, or delete images, so the album
list and the home page read four columns instead of counting per request.

Appends are counted as deltas under the album's row lock (album_add_images
holds it): an upload of 20,000 files into one album stays linear. Every other
change recounts the albums it touched in one UPDATE, after locking their rows,
so a recount queues behind a concurrent add and counts what it committed.
Call these inside the writer's transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from django.db import transaction
from django.db.models import Count, F, OuterRef, Q, Subquery, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from albums.models import Album, AlbumImage, Image, Visibility

logger = logging.getLogger(__name__)

# What a visitor sees of a public album's members (the other condition of
# Image.objects.public, "not held only by private albums", holds for any
# member of a public album).
PUBLIC_MEMBER = Q(image__visibility=Visibility.PUBLIC, image__is_nsfw=False)
CHUNK = 500  # SQLite's variable limit


def albums_recount(album_ids: Iterable[int]) -> int:
    """Recount the albums `album_ids` from their memberships: one UPDATE (after
    locking the rows in id order, so two recounts never deadlock)."""
    ids = sorted(set(album_ids))
    if not ids:
        return 0
    with transaction.atomic():
        # A separate locking statement: the UPDATE below then takes a fresh
        # snapshot (READ COMMITTED) and counts what a concurrent add committed.
        list(Album.objects.select_for_update().filter(pk__in=ids).values_list("pk"))
        return _recount(ids)


def _recount(ids: list[int]) -> int:
    members = AlbumImage.objects.filter(album=OuterRef("pk")).order_by()
    public = members.filter(PUBLIC_MEMBER)
    return Album.objects.filter(pk__in=ids).update(
        image_count=Coalesce(_count(members), 0),
        public_image_count=Coalesce(_count(public), 0),
        # The first member in album order (the album_image_order index).
        cover=Subquery(members.order_by("position", "id").values("image_id")[:1]),
        public_cover=Subquery(public.order_by("position", "id").values("image_id")[:1]),
    )


def _count(members: object) -> Subquery:
    return Subquery(
        members.values("album").annotate(n=Count("pk")).values("n")  # type: ignore[attr-defined]
    )


def album_count_appended(*, album_id: int, image_ids: list[int]) -> None:
    """Count images just appended to an album (after every member it had),
    as deltas; the caller holds the album's row lock. An album with no cover
    was empty (or had no public member), so the first appended image (public
    one) becomes it. Also touches `updated`."""
    public = set(
        Image.objects.filter(
            pk__in=image_ids, visibility=Visibility.PUBLIC, is_nsfw=False
        ).values_list("pk", flat=True)
    )
    first_public = next((i for i in image_ids if i in public), None)
    changes = {
        "image_count": F("image_count") + len(image_ids),
        "public_image_count": F("public_image_count") + len(public),
        "cover": Coalesce(F("cover"), Value(image_ids[0])),
        "updated": timezone.now(),
    }
    if first_public is not None:
        changes["public_cover"] = Coalesce(F("public_cover"), Value(first_public))
    Album.objects.filter(pk=album_id).update(**changes)


def albums_holding(image_ids: Iterable[int]) -> set[int]:
    """The ids of the albums that hold any of `image_ids`."""
    ids = list(image_ids)
    found: set[int] = set()
    for start in range(0, len(ids), CHUNK):
        found.update(
            AlbumImage.objects.filter(image_id__in=ids[start : start + CHUNK])
            .values_list("album_id", flat=True)
            .distinct()
        )
    return found


def albums_recount_for_images(image_ids: Iterable[int]) -> int:
    """Recount every album holding one of `image_ids` (their visibility or
    NSFW flag changed)."""
    return albums_recount(albums_holding(image_ids))


def album_counts_fresh(album: Album) -> dict[str, int | None]:
    """The four figures counted now, for checks (tests, `check` commands)."""
    members = AlbumImage.objects.filter(album=album).order_by("position", "id")
    public = members.filter(PUBLIC_MEMBER)
    return {
        "image_count": members.count(),
        "public_image_count": public.count(),
        "cover_id": members.values_list("image_id", flat=True).first(),
        "public_cover_id": public.values_list("image_id", flat=True).first(),
    }


def album_counts_stored(album: Album) -> dict[str, int | None]:
    fields = ("image_count", "public_image_count", "cover_id", "public_cover_id")
    return Album.objects.filter(pk=album.pk).values(*fields).get()
