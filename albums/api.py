"""JSON API for albums (/api/albums), images (/api/images) and bulk uploads
(/api/uploads).

Reads are open: anonymous and non-staff callers see public albums, and images
that are public, not NSFW and not held exclusively by private albums
(`Image.objects.visible_to`); they get 404 for anything else. Every write needs
a staff user (`staff_required`). Handlers call a selector or a service and return a
schema; expected failures are domain errors (imagineer_project.errors),
shaped once at the API root.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import PurePosixPath
from typing import Any

from django.conf import settings
from django.core.exceptions import (
    RequestDataTooBig,
    TooManyFieldsSent,
    TooManyFilesSent,
)
from django.core.files.storage import FileSystemStorage, default_storage
from django.http import (
    FileResponse,
    HttpRequest,
    HttpResponse,
    HttpResponseNotModified,
    HttpResponseRedirect,
)
from django.http.multipartparser import MultiPartParserError
from django.utils.http import content_disposition_header, parse_etags
from ninja import Field, File, Form, Query, Router, Schema, Status
from ninja.files import UploadedFile

from albums import selectors, services
from albums.ingest import EXTENSIONS, FILE_EXTENSION, MIME_TYPES, safe_display_name
from albums.models import Album, Image, NearDuplicates, UploadRun, thumbnail_url
from albums.schemas import (
    AlbumDeleteOut,
    AlbumIn,
    AlbumOut,
    AlbumPatchIn,
    ImageDetailOut,
    ImageFilterIn,
    ImageIdsIn,
    ImageOut,
    ImagePatchIn,
    ImagesAddedOut,
    ImagesRemovedOut,
    UploadOut,
    UploadRunDetailOut,
    UploadRunOut,
)
from albums.services import upload_run_create
from imagineer_project.errors import (
    DomainError,
    Invalid,
    NotFound,
    TooLarge,
    error_responses,
)
from imagineer_project.pagination import (
    PageIn,
    PageOut,
    PairPageIn,
    decode_cursor,
    encode_cursor,
    keyset_paginate,
)
from imagineer_project.permissions import is_staff, staff_required
from imagineer_project.run_api import RunRoutes, add_run_routes

logger = logging.getLogger(__name__)

router = Router(tags=["albums"])
images_router = Router(tags=["images"])
uploads_router = Router(tags=["uploads"], auth=staff_required)

# Album paths take an id or a slug. GET, PATCH and DELETE share one path (and so
# one URL pattern): with two patterns, PATCH /albums/7 would hit the GET one.


# --- albums -----------------------------------------------------------------------


@router.get("", response=PageOut[AlbumOut])
def album_list(request: HttpRequest, page: Query[PageIn]) -> Any:
    """Albums, newest first."""
    albums = selectors.album_list(user=request.user)
    return keyset_paginate(albums, keys=["-id"], page=page)


@router.post("", response={201: AlbumOut}, auth=staff_required)
def album_create(request: HttpRequest, payload: AlbumIn) -> Any:
    album = services.album_create(**payload.dict(), created_by=request.user)
    return Status(
        201, selectors.album_get(user=request.user, ref=album.pk, summary=True)
    )


@router.get("/{album_ref}", response=AlbumOut)
def album_detail(request: HttpRequest, album_ref: str) -> Any:
    """One album, by id or slug."""
    return selectors.album_get(user=request.user, ref=album_ref, summary=True)


@router.patch("/{album_ref}", response=AlbumOut, auth=staff_required)
def album_update(request: HttpRequest, album_ref: str, payload: AlbumPatchIn) -> Any:
    album = selectors.album_get(user=request.user, ref=album_ref)
    services.album_update(album=album, **payload.dict(exclude_unset=True))
    return selectors.album_get(user=request.user, ref=album.pk, summary=True)


@router.delete("/{album_ref}", response=AlbumDeleteOut, auth=staff_required)
def album_delete(
    request: HttpRequest, album_ref: str, keep_images: bool = False
) -> Any:
    """Delete the album, and its images that no other album holds unless
    `keep_images`."""
    album = selectors.album_get(user=request.user, ref=album_ref)
    return services.album_delete(album=album, keep_images=keep_images)


@router.get("/{album_ref}/images", response=PageOut[ImageOut])
def album_image_list(
    request: HttpRequest, album_ref: str, page: Query[PairPageIn]
) -> Any:
    """The album's images in album order."""
    album = selectors.album_get(user=request.user, ref=album_ref)
    images = selectors.album_images(user=request.user, album=album)
    return keyset_paginate(images, keys=["position", "membership_id"], page=page)


@router.post("/{album_ref}/images", response=ImagesAddedOut, auth=staff_required)
def album_images_add(request: HttpRequest, album_ref: str, payload: ImageIdsIn) -> Any:
    """Append images to the album; ones already in it keep their place."""
    album = selectors.album_get(user=request.user, ref=album_ref)
    added = services.album_add_image_ids(
        album=album, image_ids=payload.image_ids, added_by=request.user
    )
    return {"added": added}


@router.delete("/{album_ref}/images", response=ImagesRemovedOut, auth=staff_required)
def album_images_remove(
    request: HttpRequest,
    album_ref: str,
    image_ids: Query[list[int] | None] = None,
    payload: ImageIdsIn | None = None,
) -> Any:
    """Take images out of the album (they stay in the library). The ids come as
    a JSON body {"image_ids": [...]} or as ?image_ids=1&image_ids=2."""
    ids = (payload.image_ids if payload else None) or image_ids
    if not ids:
        raise Invalid("Send image_ids in the body or the query string.")
    album = selectors.album_get(user=request.user, ref=album_ref)
    return {"removed": services.album_remove_images(album=album, image_ids=ids)}


# --- images -----------------------------------------------------------------------


@images_router.get("", response=PageOut[ImageOut])
@error_responses(404)
def image_list(
    request: HttpRequest, filters: Query[ImageFilterIn], page: Query[PageIn]
) -> Any:
    """Images, newest first, filtered."""
    if all(value is None or value == "" for value in filters.model_dump().values()):
        return _newest_images(request, page)
    album = None
    if filters.album:
        album = selectors.album_get(user=request.user, ref=filters.album)
    images = selectors.image_list(
        user=request.user,
        album=album,
        nsfw=filters.nsfw,
        review_status=filters.review_status,
        source_kind=filters.source_kind,
        q=filters.q,
    )
    # The rows as named tuples of ImageOut's columns, rendered as ImageOut
    # renders them (tests/test_page_fast_paths.py compares the two): building
    # 50 model objects and validating them field by field through the schema
    # was most of this list's time. The declared response stays ImageOut.
    rows = keyset_paginate(
        images.values_list(*IMAGE_OUT_COLUMNS, named=True), keys=["-id"], page=page
    )
    items = [image_out_item(row._asdict()) for row in rows.items]
    return _image_page_response(request, items, rows.next_cursor)


def _newest_images(request: HttpRequest, page: PageIn) -> HttpResponse:
    """The unfiltered list (most requests): the same page, its SQL compiled
    once (selectors.newest_images) instead of on every request."""
    before = decode_cursor(page.cursor, 1)[0] if page.cursor else None
    rows = selectors.newest_images(
        user=request.user,
        columns=IMAGE_OUT_COLUMNS,
        before=before,
        count=page.limit + 1,
    )
    items = [
        image_out_item(dict(zip(IMAGE_OUT_COLUMNS, row, strict=True))) for row in rows
    ]
    if len(items) <= page.limit:
        return _image_page_response(request, items, None)
    items = items[: page.limit]
    return _image_page_response(request, items, encode_cursor([items[-1]["id"]]))


def _image_page_response(
    request: HttpRequest, items: list[dict[str, Any]], next_cursor: str | None
) -> HttpResponse:
    # The root API's renderer (imported here: the root imports this module).
    from imagineer_project.api import api

    body = {"items": items, "next_cursor": next_cursor}
    return api.create_response(request, body, status=200)


# ImageOut's fields that are columns (the two URLs are made from the id).
IMAGE_OUT_COLUMNS = tuple(
    name for name in ImageOut.model_fields if name not in ("file_url", "thumbnail_url")
)


def image_out_item(columns: dict[str, Any]) -> dict[str, Any]:
    """One ImageOut, in its field order, from its columns."""
    image_id = columns["id"]
    return {
        "file_url": f"/api/images/{image_id}/file",
        "thumbnail_url": thumbnail_url(image_id),
        **columns,
    }


@images_router.get("/{int:image_id}", response=ImageDetailOut)
def image_detail(request: HttpRequest, image_id: int) -> Any:
    """One image with its labels, provenance and albums."""
    return selectors.image_get(user=request.user, image_id=image_id, detail=True)


@images_router.patch("/{int:image_id}", response=ImageDetailOut, auth=staff_required)
def image_update(request: HttpRequest, image_id: int, payload: ImagePatchIn) -> Any:
    image = selectors.image_get(user=request.user, image_id=image_id)
    services.image_update(image=image, **payload.dict(exclude_unset=True))
    return selectors.image_get(user=request.user, image_id=image_id, detail=True)


@images_router.delete("/{int:image_id}", response={204: None}, auth=staff_required)
def image_delete(request: HttpRequest, image_id: int) -> Any:
    """Delete the image with its labels, memberships and files."""
    image = selectors.image_get(user=request.user, image_id=image_id)
    services.images_delete(images=[image])
    return Status(204, None)


@images_router.get("/{int:image_id}/file")
def image_file(request: HttpRequest, image_id: int) -> HttpResponse:
    """The stored original (metadata stripped)."""
    image = selectors.image_get(user=request.user, image_id=image_id)
    return _stored_file(
        request,
        image,
        image.file.name,
        MIME_TYPES[image.format],
        etag=image.sha256,
        filename=_download_name(image),
    )


def _download_name(image: Image) -> str:
    """The original filename, made safe again (it goes into a header), with an
    extension that matches the content."""
    name = safe_display_name(image.original_filename) or image.sha256[:16]
    if EXTENSIONS.get(PurePosixPath(name).suffix.lower()) != image.format:
        name = f"{name}.{FILE_EXTENSION[image.format]}"
    return name


class ThumbnailIn(Schema):
    # The configured sizes, as the schema's enum; any other is invalid_size.
    size: int = Field(
        256, json_schema_extra={"enum": list(settings.IMAGINEER_THUMBNAIL_SIZES)}
    )


@images_router.get("/{int:image_id}/thumbnail")
def image_thumbnail(
    request: HttpRequest,
    image_id: int,
    thumbnail: Query[ThumbnailIn],
) -> HttpResponse:
    """A WebP thumbnail fitting in size×size (256 or 512)."""
    size = thumbnail.size
    sizes = settings.IMAGINEER_THUMBNAIL_SIZES
    if size not in sizes:
        raise Invalid(
            f"size must be one of {', '.join(map(str, sizes))}.", code="invalid_size"
        )
    image = selectors.image_get(user=request.user, image_id=image_id)
    key = _existing(image, lambda: services.image_thumbnail_key(image, size))
    return _stored_file(
        request, image, key, "image/webp", etag=f"{image.sha256}-{size}"
    )


# How long a signed S3 URL works; the redirect to it is cached for less.
SIGNED_URL_SECONDS = 600


def _stored_file(
    request: HttpRequest,
    image: Image,
    key: str,
    content_type: str,
    *,
    etag: str,
    filename: str | None = None,
) -> HttpResponse:
    """A stored file: 304 when the caller holds it (If-None-Match), a redirect
    to a signed URL on remote storage (S3), else the bytes. docs/api.md
    "Caching"."""
    # Keys are content hashes and an id's content never changes, so the hash is
    # a strong validator and a match skips opening the file at all. The URL is
    # by id and who may see it can change (NSFW, private): caches revalidate.
    shared = _shared_cacheable(request, image)
    cache_control = f"{'public' if shared else 'private'}, max-age=0, must-revalidate"
    if f'"{etag}"' in parse_etags(request.headers.get("If-None-Match", "")):
        response: HttpResponse = HttpResponseNotModified()
    elif not isinstance(default_storage, FileSystemStorage):
        response = HttpResponseRedirect(_signed_url(key, content_type, filename))
        # Never in a shared cache, and dropped before the signature expires.
        cache_control = f"private, max-age={SIGNED_URL_SECONDS // 2}"
    else:
        handle = _existing(image, lambda: default_storage.open(key, "rb"))
        response = FileResponse(handle, content_type=content_type, filename=filename)
    response["ETag"] = f'"{etag}"'
    response["Cache-Control"] = cache_control
    return response


def _shared_cacheable(request: HttpRequest, image: Image) -> bool:
    """Whether a shared cache may keep the answer: the image is one a visitor
    sees. A non-staff caller got this far only for such an image."""
    if not selectors.sees_everything(request.user):
        return True
    return Image.objects.public().filter(pk=image.pk).exists()


def _signed_url(key: str, content_type: str, filename: str | None) -> str:
    parameters = {"ResponseContentType": content_type}
    if filename:
        parameters["ResponseContentDisposition"] = content_disposition_header(
            as_attachment=False, filename=filename
        )
    return default_storage.url(key, parameters=parameters, expire=SIGNED_URL_SECONDS)


def _existing(image: Image, read: Any) -> Any:
    try:
        return read()
    except FileNotFoundError:
        logger.error("Image %s: its file is missing from storage", image.pk)
        raise NotFound(
            f"The file of image {image.pk} is missing.", code="file_missing"
        ) from None


# --- uploads ----------------------------------------------------------------------


def staff_upload_required(request: HttpRequest) -> Any:
    """staff_required for uploads. It refuses a body over
    IMAGINEER_MAX_REQUEST_BYTES by its Content-Length first, since the CSRF check
    would parse (and spool to disk) the whole multipart body before we could say
    no; then it parses the form itself, so a form Django refuses (too many
    files, malformed) is a 413 or 400 rather than a 500 from inside ninja."""
    if is_staff(request):
        _refuse_oversized(request)
    try:
        user = staff_required(request)
        request.FILES  # noqa: B018 - parse now, inside this try
    except (RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent):
        raise TooLarge(
            "Too many files or fields in one request; send them in several."
        ) from None
    except MultiPartParserError as exc:
        raise DomainError(f"The multipart body is malformed: {exc}") from None
    return user


def _refuse_oversized(request: HttpRequest) -> None:
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    limit = settings.IMAGINEER_MAX_REQUEST_BYTES
    if length > limit:
        raise TooLarge(
            f"The request is {length:,} bytes; the limit is {limit:,}. "
            "Send the files in several requests."
        )


def _upload_album(
    request: HttpRequest, album_id: int | None, album_name: str | None
) -> Album:
    if album_id is not None:
        return selectors.album_get(user=request.user, ref=album_id)
    if album_name and album_name.strip():
        return services.album_get_or_create(
            name=album_name[:200],
            source_kind=Album.Kind.UPLOAD,
            created_by=request.user,
        )
    raise Invalid(
        "Say where the images go: album_id or album_name.", code="album_required"
    )


@images_router.post(
    "/upload",
    response={200: UploadOut, 201: UploadOut, 202: UploadOut},
    auth=staff_upload_required,
)
@error_responses(404, 413, 429, 507)
def image_upload(
    request: HttpRequest,
    response: HttpResponse,
    files: File[list[UploadedFile]],
    album_id: Form[int | None] = None,
    album_name: Form[str | None] = None,
    near_duplicates: Form[NearDuplicates] = NearDuplicates.REPLACE_SMALLER,
) -> Any:
    """Ingest images now, answering per file: created, duplicate or rejected,
    with its warnings (extension_mismatch, near_duplicate). Answers 201 when at
    least one image was created, else 200. A file whose header claims more
    pixels (all frames) than IMAGINEER_UPLOAD_INLINE_PIXELS is not decoded here:
    it is `queued` for an upload run and the answer is 202, with the run's
    location (Location header and `run.url`)."""
    album = _upload_album(request, album_id, album_name)
    outcome = services.images_upload(
        files=files,
        album=album,
        uploaded_by=request.user,
        near_duplicates=near_duplicates,
        rate_limited=True,
    )
    counts = Counter(result.status for result in outcome.results)
    body: dict[str, Any] = {
        "album": album,
        "results": [result.as_dict() for result in outcome.results],
        "counts": {s: counts[s] for s in ("created", "duplicate", "rejected")},
        "queued": counts["queued"],
    }
    if outcome.run is not None:
        url = f"/api/uploads/{outcome.run.pk}"
        body["run"] = {"id": outcome.run.pk, "url": url}
        response.headers["Location"] = url
        return Status(202, body)
    return Status(201 if counts["created"] else 200, body)


@images_router.post(
    "/bulk-upload", response={202: UploadRunDetailOut}, auth=staff_upload_required
)
@error_responses(404, 413, 429, 507)
def image_bulk_upload(
    request: HttpRequest,
    files: File[list[UploadedFile]],
    album_id: Form[int | None] = None,
    album_name: Form[str | None] = None,
    near_duplicates: Form[NearDuplicates] = NearDuplicates.REPLACE_SMALLER,
) -> Any:
    """Stage images and zip archives for the worker; watch /api/uploads/{id}."""
    album = _upload_album(request, album_id, album_name)
    run = upload_run_create(
        files=files,
        album=album,
        uploaded_by=request.user,
        near_duplicates=near_duplicates,
        rate_limited=True,
    )
    return Status(202, selectors.upload_run_detail_rows().get(pk=run.pk))


add_run_routes(
    uploads_router,
    RunRoutes(
        model=UploadRun,
        what="Upload run",
        location="/api/uploads",
        list_out=UploadRunOut,
        detail_out=UploadRunDetailOut,
        detail=selectors.upload_run_detail_rows,
        listing=selectors.upload_run_list,
        cancel_doc="Stop a bulk upload: at once if queued, at its next file if "
        "running. Its staged files are removed.",
    ),
)
