"""POST /api/images/upload, /api/images/bulk-upload and /api/uploads."""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from pathlib import Path
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from albums.models import Album, Image, UploadRun
from albums.services import image_key
from albums.tests.builders import make_album
from imagineer_project.testing import make_image_bytes

pytestmark = pytest.mark.django_db

UPLOAD = "/api/images/upload"
BULK = "/api/images/bulk-upload"
CALLERS = ["anonymous", "user", "staff", "token"]


def jpeg(seed: int = 1) -> bytes:
    return make_image_bytes("JPEG", (40, 30), seed=seed)


def files_under(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose IHDR claims width×height: a decompression bomb's header."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data)
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 16))
        + chunk(b"IEND", b"")
    )


def multipart(files: list[tuple[str, bytes]], **fields: str) -> tuple[bytes, str]:
    """A multipart body built by hand: the test client would strip the
    directories from a filename, and the point is to send them."""
    boundary = "imagineer-test-boundary"
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
        f"{value}\r\n".encode()
        for name, value in fields.items()
    ]
    for filename, data in files:
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="files"; '
            f'filename="{filename}"\r\nContent-Type: application/octet-stream\r\n\r\n'
        )
        parts.append(head.encode() + data + b"\r\n")
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def post_files(client: Any, path: str, files: list[tuple[str, bytes]], **fields: str):
    body, content_type = multipart(files, **fields)
    return client.post(path, data=body, content_type=content_type)


def zip_of(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buf.getvalue()


# --- auth -------------------------------------------------------------------------


@pytest.mark.parametrize("caller", CALLERS)
def test_upload_needs_staff(call_as, caller: str, settings) -> None:
    response = post_files(call_as(caller), UPLOAD, [("a.jpg", jpeg())], album_name="A")
    expected = {"anonymous": 401, "user": 403, "staff": 201, "token": 201}[caller]
    assert response.status_code == expected
    assert Image.objects.count() == (1 if expected == 201 else 0)
    if expected != 201:
        assert files_under(Path(settings.MEDIA_ROOT)) == set()


@pytest.mark.parametrize("caller", CALLERS)
def test_bulk_upload_needs_staff(call_as, caller: str) -> None:
    response = post_files(call_as(caller), BULK, [("a.jpg", jpeg())], album_name="A")
    expected = {"anonymous": 401, "user": 403, "staff": 202, "token": 202}[caller]
    assert response.status_code == expected
    assert UploadRun.objects.count() == (1 if expected == 202 else 0)


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("path", ["/api/uploads", "/api/uploads/{run}"])
def test_upload_runs_are_staff_only(call_as, caller: str, path: str) -> None:
    run = UploadRun.objects.create(album=make_album())
    response = call_as(caller).get(path.format(run=run.pk))
    expected = {"anonymous": 401, "user": 403, "staff": 200, "token": 200}[caller]
    assert response.status_code == expected


@pytest.mark.parametrize("caller", CALLERS)
def test_cancel_needs_staff(call_as, caller: str) -> None:
    run = UploadRun.objects.create(album=make_album())
    response = call_as(caller).post(f"/api/uploads/{run.pk}/cancel")
    expected = {"anonymous": 401, "user": 403, "staff": 200, "token": 200}[caller]
    assert response.status_code == expected
    run.refresh_from_db()
    assert run.status == ("cancelled" if expected == 200 else "queued")


# --- upload -----------------------------------------------------------------------


def test_each_file_gets_its_own_answer(staff_client, settings) -> None:
    good = jpeg(seed=1)
    files = [
        ("card.jpg", good),
        ("again.jpg", good),
        ("notes.png", b"just some text, not an image\n"),
        ("half.jpg", make_image_bytes("JPEG", (300, 200), seed=2)[:600]),
        ("empty.jpg", b""),
        ("bomb.png", png_claiming(100_000, 100_000)),
    ]
    response = post_files(staff_client, UPLOAD, files, album_name="Tarot deck")
    assert response.status_code == 201
    body = response.json()
    album = Album.objects.get()
    image = Image.objects.get()
    assert body["album"] == {"id": album.pk, "slug": "tarot-deck", "name": "Tarot deck"}
    assert [
        (r["filename"], r["status"], r["image_id"], r["code"]) for r in body["results"]
    ] == [
        ("card.jpg", "created", image.pk, None),
        ("again.jpg", "duplicate", image.pk, None),
        ("notes.png", "rejected", None, "unsupported"),
        ("half.jpg", "rejected", None, "corrupt"),
        ("empty.jpg", "rejected", None, "empty"),
        ("bomb.png", "rejected", None, "too_many_pixels"),
    ]
    assert all(r["reason"] for r in body["results"][2:])
    assert body["counts"] == {"created": 1, "duplicate": 1, "rejected": 4}
    assert album.source_kind == "upload"
    assert list(album.images.all()) == [image]
    # Only the good image's file and thumbnail: the rejected ones left nothing.
    assert image_key(image.sha256, "jpg") in files_under(Path(settings.MEDIA_ROOT))
    assert len(files_under(Path(settings.MEDIA_ROOT))) == 2


def test_text_named_as_jpeg_is_a_mismatch_or_unsupported(staff_client) -> None:
    png = make_image_bytes("PNG", seed=3)
    response = post_files(
        staff_client,
        UPLOAD,
        [("photo.jpg", png), ("readme.txt", b"hello")],
        album_name="A",
    )
    codes = [r["code"] for r in response.json()["results"]]
    assert response.status_code == 200  # nothing was created
    assert codes == ["mismatch", "unsupported"]
    assert Image.objects.count() == 0


def test_directories_in_a_filename_are_dropped(staff_client, settings) -> None:
    good = jpeg(seed=4)
    response = post_files(
        staff_client, UPLOAD, [("../../etc/passwd.jpg", good)], album_name="A"
    )
    result = response.json()["results"][0]
    image = Image.objects.get()
    assert response.status_code == 201
    assert result == {
        "filename": "passwd.jpg",
        "status": "created",
        "image_id": image.pk,
        "code": None,
        "reason": None,
        "warnings": [],
    }
    assert image.original_filename == "passwd.jpg"
    assert image.file.name == image_key(image.sha256, "jpg")
    media = Path(settings.MEDIA_ROOT)
    assert Path(media, image.file.name).read_bytes() == good
    # Nothing was written beside or above MEDIA_ROOT.
    assert {p.name for p in media.parent.iterdir()} == {"media"}
    assert not Path(media.parent.parent, "etc").exists()


def test_an_oversized_file_is_rejected_and_the_others_go_on(
    staff_client, settings
) -> None:
    settings.IMAGINEER_MAX_UPLOAD_BYTES = 5000
    big = make_image_bytes("BMP", (100, 100), seed=5)  # uncompressed: 30 kB
    response = post_files(
        staff_client, UPLOAD, [("big.bmp", big), ("small.jpg", jpeg())], album_id="0"
    )
    assert response.status_code == 404  # album 0 does not exist
    album = make_album(name="Sizes")
    response = post_files(
        staff_client,
        UPLOAD,
        [("big.bmp", big), ("small.jpg", jpeg())],
        album_id=str(album.pk),
    )
    assert [(r["status"], r["code"]) for r in response.json()["results"]] == [
        ("rejected", "too_large"),
        ("created", None),
    ]


def test_a_request_over_the_limit_is_refused_before_reading(
    staff_client, settings
) -> None:
    settings.IMAGINEER_MAX_REQUEST_BYTES = 2000
    response = post_files(
        staff_client, UPLOAD, [("a.jpg", jpeg()), ("b.jpg", jpeg(2))], album_name="A"
    )
    assert response.status_code == 413
    assert response.json()["error_code"] == "payload_too_large"
    assert Album.objects.count() == Image.objects.count() == 0


def test_a_zip_is_sent_to_bulk_upload(staff_client) -> None:
    archive = zip_of({"a.jpg": jpeg()})
    response = post_files(
        staff_client,
        UPLOAD,
        [("cards.zip", archive), ("x.bin", archive)],
        album_name="A",
    )
    results = response.json()["results"]
    assert [(r["status"], r["code"]) for r in results] == [
        ("rejected", "archive"),
        ("rejected", "archive"),
    ]
    assert "bulk-upload" in results[0]["reason"]
    assert Image.objects.count() == 0


def test_album_name_finds_the_existing_album(staff_client) -> None:
    album = make_album(name="Tarot deck")
    response = post_files(
        staff_client, UPLOAD, [("a.jpg", jpeg())], album_name=" Tarot deck "
    )
    assert response.json()["album"]["id"] == album.pk
    assert Album.objects.count() == 1


@pytest.mark.parametrize("fields", [{}, {"album_name": "   "}])
def test_an_album_is_required(staff_client, fields: dict[str, str]) -> None:
    response = post_files(staff_client, UPLOAD, [("a.jpg", jpeg())], **fields)
    assert response.status_code == 422
    assert response.json()["error_code"] == "album_required"
    assert Image.objects.count() == 0


def test_files_are_required(staff_client) -> None:
    response = staff_client.post(UPLOAD, data={"album_name": "A"})
    assert response.status_code == 422


def test_the_test_client_upload_path_works_too(staff_client) -> None:
    response = staff_client.post(
        UPLOAD,
        data={
            "files": [
                SimpleUploadedFile("a.jpg", jpeg(1)),
                SimpleUploadedFile("b.jpg", jpeg(2)),
            ],
            "album_name": "A",
        },
    )
    assert response.json()["counts"] == {"created": 2, "duplicate": 0, "rejected": 0}


# --- bulk upload and runs ---------------------------------------------------------


def test_bulk_upload_of_a_zip_runs_to_completion(
    staff_client, django_capture_on_commit_callbacks, settings
) -> None:
    archive = zip_of(
        {
            "deck/one.jpg": jpeg(1),
            "deck/two.png": make_image_bytes("PNG", seed=2),
            "three.jpg": jpeg(3),
            "README.txt": b"not an image",
        }
    )
    with django_capture_on_commit_callbacks(execute=True):
        response = post_files(
            staff_client, BULK, [("deck.zip", archive)], album_name="Deck"
        )
    assert response.status_code == 202
    queued = response.json()
    assert (queued["status"], queued["results"]) == ("queued", [])
    album = Album.objects.get()

    run = staff_client.get(f"/api/uploads/{queued['id']}").json()
    images = list(Image.objects.order_by("id"))
    assert {
        k: run[k] for k in ("status", "progress_done", "progress_total", "percent")
    } == {
        "status": "succeeded",
        "progress_done": 3,
        "progress_total": 3,
        "percent": 100,
    }
    assert run["counts"] == {"created": 3, "duplicate": 0, "rejected": 0}
    assert run["album"] == {"id": album.pk, "slug": "deck", "name": "Deck"}
    assert run["results"] == [
        {
            "filename": name,
            "status": "created",
            "image_id": image.pk,
            "code": None,
            "reason": None,
            "warnings": [],
        }
        for name, image in zip(["one.jpg", "two.png", "three.jpg"], images, strict=True)
    ]
    assert (run["message"], run["error"]) == ("3 created, 0 duplicate, 0 rejected", "")
    assert album.images.count() == 3
    # The staged archive is gone once the run is done.
    assert not any(
        k.startswith("staging/") for k in files_under(Path(settings.MEDIA_ROOT))
    )


def test_cancelling_a_finished_run_is_a_conflict(staff_client) -> None:
    run = UploadRun.objects.create(album=make_album(), status="succeeded")
    response = staff_client.post(f"/api/uploads/{run.pk}/cancel")
    assert response.status_code == 409
    assert response.json()["error_code"] == "conflict"


def test_cancelling_a_queued_run_discards_its_staged_files(
    staff_client, settings
) -> None:
    # No on-commit capture: the run stays queued, as if the worker were busy.
    response = post_files(staff_client, BULK, [("a.jpg", jpeg())], album_name="A")
    run_id = response.json()["id"]
    staged = files_under(Path(settings.MEDIA_ROOT))
    assert len(staged) == 1 and next(iter(staged)).startswith("staging/")

    response = staff_client.post(f"/api/uploads/{run_id}/cancel")
    assert (response.status_code, response.json()["status"]) == (200, "cancelled")
    assert files_under(Path(settings.MEDIA_ROOT)) == set()


def test_upload_runs_list_newest_first_without_results(staff_client) -> None:
    album = make_album()
    runs = [UploadRun.objects.create(album=album, results=[{"x": 1}]) for _ in range(3)]
    first = staff_client.get("/api/uploads?limit=2").json()
    second = staff_client.get(
        f"/api/uploads?limit=2&cursor={first['next_cursor']}"
    ).json()
    assert [r["id"] for r in first["items"] + second["items"]] == [
        r.pk for r in reversed(runs)
    ]
    assert second["next_cursor"] is None
    assert "results" not in first["items"][0]


def test_unknown_run_is_404(staff_client) -> None:
    assert staff_client.get("/api/uploads/999").status_code == 404
    assert staff_client.post("/api/uploads/999/cancel").status_code == 404


def test_a_run_error_never_shows_a_media_path(staff_client, settings) -> None:
    missing = Path(settings.MEDIA_ROOT, "staging/uploads/x/000000")
    run = UploadRun.objects.create(
        album=make_album(),
        status="failed",
        error=f"FileNotFoundError: [Errno 2] No such file: '{missing}'",
    )
    body = staff_client.get(f"/api/uploads/{run.pk}").content.decode()
    assert str(settings.MEDIA_ROOT) not in body
    assert "<media>/staging/uploads/x/000000" in body


def test_too_many_files_in_one_request_is_413(staff_client, settings) -> None:
    settings.DATA_UPLOAD_MAX_NUMBER_FILES = 2
    files = [(f"{n}.jpg", jpeg(n)) for n in range(3)]
    response = post_files(staff_client, UPLOAD, files, album_name="A")
    assert response.status_code == 413
    assert response.json()["error_code"] == "payload_too_large"
    assert Album.objects.count() == Image.objects.count() == 0


def test_a_malformed_multipart_body_is_400(staff_client) -> None:
    response = staff_client.post(
        UPLOAD, data=b"--x\r\nnonsense", content_type="multipart/form-data"
    )
    assert response.status_code == 400
    assert response.json()["error_code"] == "bad_request"
