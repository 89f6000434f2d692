"""Server-rendered pages: the album gallery, one album, one image.

Anonymous visitors and signed-in users without staff status see only public
albums, and only images that are public, not NSFW and not held exclusively by
private albums (`Image.objects.visible_to`); everything else is a 404 for them.
Staff see everything, NSFW images blurred until they reveal them.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import get_script_prefix, reverse
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from albums import selectors
from albums.extensions import album_page_parts, image_page_parts
from albums.models import Album, Visibility, thumbnail_url
from imagineer_project.permissions import is_staff

logger = logging.getLogger(__name__)

GALLERY_PAGE_SIZE = 48
ALBUM_PAGE_SIZE = 60
COVERS_PER_ALBUM = selectors.COVER_COUNT


def gallery(request: HttpRequest) -> HttpResponse:
    # Stored counts and covers (albums.counts): no count per album per request.
    number = request.GET.get("page")
    if number in (None, "", "1"):
        # The first page (most requests): its albums with their covers' flags
        # in one query compiled once; counted only when there are more pages.
        size = GALLERY_PAGE_SIZE
        head = selectors.album_list_head(user=request.user, count=size + 1)
        fits = len(head) <= size
        albums = head if fits else _gallery_albums(request)
        page = Paginator(albums, size).page(1)
        page.object_list = _attach_covers(head[:size])
    else:
        page = Paginator(_gallery_albums(request), GALLERY_PAGE_SIZE).get_page(number)
        page.object_list = _attach_covers(page.object_list)
    return render(request, "albums/gallery.html", {"page": page})


def _gallery_albums(request: HttpRequest) -> Any:
    return selectors.album_list(user=request.user, cover_flags=True)


def album_page(request: HttpRequest, slug: str) -> HttpResponse:
    album = selectors.album_for_page(user=request.user, slug=slug)
    if album is None:
        raise Http404("No such album.")
    staff = is_staff(request)
    # Tuples of the four columns a tile shows, not two model objects per tile.
    paginator = Paginator(
        selectors.AlbumTiles(album=album, staff=staff), ALBUM_PAGE_SIZE
    )
    # The stored count (albums.counts) instead of a COUNT over the album.
    paginator.count = album.image_count if staff else album.public_image_count
    page = paginator.get_page(request.GET.get("page"))
    context = {
        "album": album,
        "page": page,
        "tiles": tiles_html(page.object_list),
        # Sections the apps above albums add (labeling coverage, for staff).
        "parts": album_page_parts(request, album),
    }
    return render(request, "albums/album.html", context)


def image_page(request: HttpRequest, image_id: int) -> HttpResponse:
    image = selectors.image_for_page(user=request.user, image_id=image_id)
    if image is None:
        raise Http404("No such image.")
    albums = selectors.image_albums(user=request.user, image=image)
    context = {
        "image": image,
        "albums": albums,
        # Sections the apps above albums add: its labels, its recipe.
        "parts": image_page_parts(request, image),
    }
    return render(request, "albums/image.html", context)


# --- helpers ----------------------------------------------------------------------


def tiles_html(rows: Iterable[tuple[int, bool, str, str]]) -> SafeString:
    """The album page's grid tiles (the markup of albums/_thumb.html) from
    `selectors.AlbumTiles` rows, built here: 60 template includes, each
    reversing a URL, were most of the page's time."""
    head, tail = _image_page_url(get_script_prefix())
    tiles = []
    for pk, is_nsfw, visibility, filename in rows:
        badges = ""
        if is_nsfw:
            badges += '<span class="badge badge-nsfw">NSFW</span>'
        if visibility == Visibility.PRIVATE:
            badges += '<span class="badge badge-private">Private</span>'
        tiles.append(
            f'<a class="tile{" nsfw-blur" if is_nsfw else ""}" '
            f'href="{head}{pk}{tail}" data-image-id="{pk}">'
            f'<img src="{thumbnail_url(pk)}?size=256" alt="{escape(filename)}" '
            f'loading="lazy" width="256" height="256">{badges}</a>'
        )
    return mark_safe("\n".join(tiles))  # noqa: S308 (ids, fixed text, escaped names)


@functools.lru_cache(maxsize=8)
def _image_page_url(script_prefix: str) -> tuple[str, str]:
    """An image page's URL around its id, reversed once per script prefix."""
    marker = "2147483647"
    head, tail = reverse("image-page", args=[int(marker)]).split(marker)
    return head, tail


def _attach_covers(albums: Any) -> list[Album]:
    """Each album's `covers` (id and NSFW flag), from the flags its query
    carries (selectors.album_list with cover_flags): no query of its own."""
    albums = list(albums)
    slots = [f"cover_{n}" for n in range(selectors.COVER_COUNT)]
    for album in albums:
        # A flag is None where the cover has no image.
        pairs = [(getattr(album, s), getattr(album, f"{s}_nsfw")) for s in slots]
        album.covers = [Cover(pk, nsfw) for pk, nsfw in pairs if nsfw is not None]
    return albums


@dataclass(frozen=True)
class Cover:
    """What the gallery shows of a cover image."""

    pk: int
    is_nsfw: bool

    @property
    def thumbnail_url(self) -> str:
        return thumbnail_url(self.pk)
