"""Server-rendered pages: the album gallery, one album, one image.

Anonymous visitors and signed-in users without staff status see only public
albums, and only images that are public, not NSFW and not held exclusively by
private albums (`Image.objects.visible_to`); everything else is a 404 for them.
Staff see everything, NSFW images blurred until they reveal them.
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.paginator import Paginator
from django.db.models import Count, OuterRef, Q, QuerySet, Subquery
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render

from albums.extensions import album_page_parts, image_page_parts
from albums.models import Album, AlbumImage, Image
from imagineer_project.permissions import is_staff

logger = logging.getLogger(__name__)

GALLERY_PAGE_SIZE = 48
ALBUM_PAGE_SIZE = 60
COVERS_PER_ALBUM = 4


def gallery(request: HttpRequest) -> HttpResponse:
    albums = _with_cover_ids(request, Album.objects.visible_to(request.user))
    page = Paginator(albums, GALLERY_PAGE_SIZE).get_page(request.GET.get("page"))
    page.object_list = _attach_counts_and_covers(request, page.object_list)
    return render(request, "albums/gallery.html", {"page": page})


def album_page(request: HttpRequest, slug: str) -> HttpResponse:
    album = get_object_or_404(Album.objects.visible_to(request.user), slug=slug)
    members = (
        album.memberships.filter(_visible_members(request))
        .select_related("image")
        .order_by("position", "id")  # served by the album_image_order index
    )
    page = Paginator(members, ALBUM_PAGE_SIZE).get_page(request.GET.get("page"))
    context = {
        "album": album,
        "page": page,
        # Sections the apps above albums add (labeling coverage, for staff).
        "parts": album_page_parts(request, album),
    }
    return render(request, "albums/album.html", context)


def image_page(request: HttpRequest, image_id: int) -> HttpResponse:
    image = get_object_or_404(Image.objects.visible_to(request.user), pk=image_id)
    albums = (
        Album.objects.visible_to(request.user)
        .filter(memberships__image=image)
        .order_by("name")
    )
    context = {
        "image": image,
        "albums": albums,
        # Sections the apps above albums add: its labels, its recipe.
        "parts": image_page_parts(request, image),
    }
    return render(request, "albums/image.html", context)


# --- helpers ----------------------------------------------------------------------


def _visible_members(request: HttpRequest) -> Q:
    """AlbumImage rows whose image this visitor may see."""
    if is_staff(request):
        return Q()
    return Q(image__in=Image.objects.visible_to(request.user))


def _with_cover_ids(request: HttpRequest, albums: QuerySet) -> QuerySet:
    # One correlated subquery per cover slot: each walks the album_image_order
    # index and stops early, where a window over whole albums would read them all.
    members = (
        AlbumImage.objects.filter(_visible_members(request), album=OuterRef("pk"))
        .order_by("position", "id")
        .values("image_id")
    )
    return albums.annotate(
        **{f"cover_{n}": Subquery(members[n : n + 1]) for n in range(COVERS_PER_ALBUM)}
    )


def _attach_counts_and_covers(request: HttpRequest, albums: Any) -> list[Album]:
    """Two queries for the whole page: visible image counts, then cover images."""
    albums = list(albums)
    counts = dict(
        AlbumImage.objects.filter(
            _visible_members(request), album_id__in=[a.pk for a in albums]
        )
        .values_list("album_id")
        .annotate(n=Count("id"))
        .order_by()
    )
    cover_ids = {
        getattr(a, f"cover_{n}") for a in albums for n in range(COVERS_PER_ALBUM)
    } - {None}
    images = Image.objects.only("id", "is_nsfw").in_bulk(cover_ids)
    for album in albums:
        album.visible_count = counts.get(album.pk, 0)
        ids = [getattr(album, f"cover_{n}") for n in range(COVERS_PER_ALBUM)]
        album.covers = [images[i] for i in ids if i in images]
    return albums
