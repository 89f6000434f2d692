"""Where the apps above albums add to its pages, its API and its folder import.

Albums is the bottom app layer: it may not import labeling, scraping, training
or legacy. Those apps still have something to say on an image's page (its
labels, the recipe it was generated with), in the image API (the recipe), on
an album's page (labeling coverage), about the files beside an imported
image (a `.txt` caption) and about an image a larger near duplicate replaces
(its labels move). Each registers its piece here from its
`AppConfig.ready()`; albums renders whatever is registered, in `order`.

Registration is explicit and happens once per process, before any request:
Django calls every `ready()` while it sets up.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from django.http import HttpRequest
from django.template.loader import render_to_string
from django.utils.safestring import SafeString

if TYPE_CHECKING:
    from albums.models import Album, Image

logger = logging.getLogger(__name__)

# (request, object) -> the part's template context, or None to leave it out.
ContextFn = Callable[[HttpRequest, Any], "dict[str, Any] | None"]


@dataclass(frozen=True)
class PagePart:
    """A section an upper app adds to a page: a template and its context.

    `annotations` names values the part reads from the page's image or
    album, as expressions over its row (typically `Exists(...)`): albums
    computes them in the page's own query for that row, so the context can
    tell from the object (`getattr(obj, name, True)`) that it has nothing to
    show without a query of its own."""

    name: str
    template: str
    context: ContextFn
    order: int = 100
    annotations: Callable[[], dict[str, Any]] | None = None


@dataclass(frozen=True)
class DetailField:
    """A value an upper app adds to the image detail API (declared in
    albums.schemas.ImageDetailOut with a JSON type; filled here)."""

    name: str
    value: Callable[[Image, HttpRequest | None], Any]


# (image, the image file's path on disk) -> things recorded from files beside it
SidecarReader = Callable[["Image", Path], int]
# (smaller, larger): a larger near duplicate replaces `smaller`, which is about to
# be deleted; move what the app keeps about it (its labels) to `larger`.
ImageReplacer = Callable[["Image", "Image"], None]


class Extensions:
    def __init__(self) -> None:
        self.image_page: dict[str, PagePart] = {}
        self.album_page: dict[str, PagePart] = {}
        self.image_detail: dict[str, DetailField] = {}
        self.sidecar_readers: dict[str, SidecarReader] = {}
        self.image_replacers: dict[str, ImageReplacer] = {}

    def add_image_page_part(self, part: PagePart) -> None:
        self.image_page[part.name] = part

    def add_album_page_part(self, part: PagePart) -> None:
        self.album_page[part.name] = part

    def add_image_detail_field(self, field: DetailField) -> None:
        self.image_detail[field.name] = field

    def add_sidecar_reader(self, name: str, reader: SidecarReader) -> None:
        self.sidecar_readers[name] = reader

    def add_image_replacer(self, name: str, replacer: ImageReplacer) -> None:
        self.image_replacers[name] = replacer


registry = Extensions()


def _render(
    parts: dict[str, PagePart], request: HttpRequest, obj: Any
) -> list[SafeString]:
    rendered = []
    for part in sorted(parts.values(), key=lambda p: (p.order, p.name)):
        context = part.context(request, obj)
        if context is not None:
            rendered.append(render_to_string(part.template, context, request))
    return rendered


def image_page_parts(request: HttpRequest, image: Image) -> list[SafeString]:
    """The registered sections of an image's page, rendered, in order."""
    return _render(registry.image_page, request, image)


def image_page_annotations() -> dict[str, Any]:
    """The registered image-page parts' annotations, for the page's image query."""
    return _annotations(registry.image_page)


def album_page_annotations() -> dict[str, Any]:
    """The registered album-page parts' annotations, for the page's album query."""
    return _annotations(registry.album_page)


def _annotations(parts: dict[str, PagePart]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for part in parts.values():
        if part.annotations is not None:
            out |= part.annotations()
    return out


def album_page_parts(request: HttpRequest, album: Album) -> list[SafeString]:
    """The registered sections of an album's page, rendered, in order."""
    return _render(registry.album_page, request, album)


def image_detail_value(name: str, image: Image, request: HttpRequest | None) -> Any:
    """A registered detail field's value; None when no app registered it."""
    field = registry.image_detail.get(name)
    return None if field is None else field.value(image, request)


def image_replaced(smaller: Image, larger: Image) -> None:
    """Let every registered app move what it keeps about `smaller` (a near
    duplicate about to be deleted) to `larger`, the copy that replaces it."""
    for replacer in registry.image_replacers.values():
        replacer(smaller, larger)


def read_sidecars(image: Image, path: Path) -> int:
    """Let every registered reader record what the files beside `path` say
    about `image`; returns how many things they recorded."""
    return sum(reader(image, path) for reader in registry.sidecar_readers.values())
