"""What legacy adds to albums' pages and API (see albums.extensions): an
imported image's provenance, that is the folder and file it came from and when
it was made, with its sidecar for staff. Registered from LegacyConfig.ready()."""

from __future__ import annotations

from typing import Any

from django.db.models import Exists, OuterRef
from django.http import HttpRequest

from albums.extensions import DetailField, PagePart, registry
from albums.models import Image
from imagineer_project.permissions import is_staff
from legacy.models import ImportItem


def latest_import(image: Image) -> ImportItem | None:
    """The newest real import of the image's bytes (the import_item_image index)."""
    return real_imports().filter(image=image).order_by("-id").first()


def real_imports() -> Any:
    return ImportItem.objects.filter(
        outcome__in=ImportItem.IMPORTED, run__dry_run=False
    )


HAS_IMPORT = "legacy_has_import"


def provenance_annotations() -> dict[str, Any]:
    return {HAS_IMPORT: Exists(real_imports().filter(image=OuterRef("pk")))}


def provenance(image: Image, request: HttpRequest | None) -> dict[str, Any] | None:
    """The image detail API's `provenance`; the sidecar for staff only."""
    item = latest_import(image)
    if item is None:
        return None
    shown = {
        "kind": "legacy import",
        "source": item.root_name,
        "path": item.relative_path,
        "made_at": item.made_at.isoformat() if item.made_at else None,
        "made_at_from": item.made_at_from,
        "import_id": item.run_id,
    }
    if request is not None and is_staff(request):
        shown["sidecar"] = item.sidecar
    return shown


def provenance_context(request: HttpRequest, image: Image) -> dict[str, Any] | None:
    if not getattr(image, HAS_IMPORT, True):
        return None  # the image page's query says it has none: no query here
    item = latest_import(image)
    if item is None:
        return None
    return {"item": item, "staff": is_staff(request)}


def register() -> None:
    registry.add_image_page_part(
        PagePart(
            "legacy",
            "legacy/_image_provenance.html",
            provenance_context,
            30,
            annotations=provenance_annotations,
        )
    )
    registry.add_image_detail_field(DetailField("provenance", provenance))
