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
from PIL import Image as PILImage

from albums.models import Album, Image, UploadFile, UploadRun
from albums.selectors import upload_run_results
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


def test_content_decides_a_wrong_extension_is_a_warning(staff_client) -> None:
    png = make_image_bytes("PNG", seed=3)
    response = post_files(
        staff_client,
        UPLOAD,
        [("photo.jpg", png), ("readme.txt", b"hello")],
        album_name="A",
    )
    assert response.status_code == 201
    photo, readme = response.json()["results"]
    assert (photo["status"], readme["status"], readme["code"]) == (
        "created",
        "rejected",
        "unsupported",
    )
    assert [w["code"] for w in photo["warnings"]] == ["extension_mismatch"]
    assert "content is PNG" in photo["warnings"][0]["message"]
    image = Image.objects.get()
    assert (image.format, image.file.name.endswith(".png")) == ("PNG", True)


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
        "progress_done": 4,
        "progress_total": 4,
        "percent": 100,
    }
    assert run["counts"] == {"created": 3, "duplicate": 0, "rejected": 1}
    assert run["album"] == {"id": album.pk, "slug": "deck", "name": "Deck"}
    names = ["deck.zip/deck/one.jpg", "deck.zip/deck/two.png", "deck.zip/three.jpg"]
    assert run["results"][:3] == [
        {
            "filename": name,
            "status": "created",
            "image_id": image.pk,
            "code": None,
            "reason": None,
            "warnings": [],
        }
        for name, image in zip(names, images, strict=True)
    ]
    readme = run["results"][3]
    assert (readme["filename"], readme["code"]) == (
        "deck.zip/README.txt",
        "unsupported",
    )
    assert (run["message"], run["error"]) == ("3 created, 0 duplicate, 1 rejected", "")
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


# --- every file gets a verdict ------------------------------------------------------


def run_of(staff_client, response) -> dict[str, Any]:
    assert response.status_code == 202, response.content
    return staff_client.get(f"/api/uploads/{response.json()['id']}").json()


def test_zip_members_that_are_not_imported_are_reported(
    staff_client, django_capture_on_commit_callbacks
) -> None:
    archive = zip_of(
        {
            "ok.jpg": jpeg(1),
            "../../escape.jpg": jpeg(2),
            "deck/../../up.png": make_image_bytes("PNG", seed=3),
            "__MACOSX/._ok.jpg": b"\x00\x05\x16\x07",
            ".hidden.jpg": jpeg(4),
            "named.txt": jpeg(5),  # content decides: a JPEG, with a warning
        }
    )
    with django_capture_on_commit_callbacks(execute=True):
        response = post_files(staff_client, BULK, [("a.zip", archive)], album_name="Z")
    results = {r["filename"]: r for r in run_of(staff_client, response)["results"]}
    verdicts = {name: (r["status"], r["code"]) for name, r in results.items()}
    assert verdicts == {
        "a.zip/ok.jpg": ("created", None),
        "a.zip/../../escape.jpg": ("rejected", "unsafe_path"),
        "a.zip/deck/../../up.png": ("rejected", "unsafe_path"),
        "a.zip/__MACOSX/._ok.jpg": ("rejected", "hidden"),
        "a.zip/.hidden.jpg": ("rejected", "hidden"),
        "a.zip/named.txt": ("created", None),
    }
    assert all(r["reason"] for r in results.values() if r["status"] == "rejected")
    warnings = results["a.zip/named.txt"]["warnings"]
    assert [w["code"] for w in warnings] == ["extension_mismatch"]
    assert Image.objects.count() == 2


def test_a_run_stops_decoding_when_its_cpu_budget_is_spent(
    staff_client, django_capture_on_commit_callbacks, settings
) -> None:
    settings.IMAGINEER_UPLOAD_RUN_CPU_SECONDS = 0  # spent by the first file
    archive = zip_of({f"{n}.png": make_image_bytes("PNG", seed=n) for n in range(4)})
    with django_capture_on_commit_callbacks(execute=True):
        response = post_files(staff_client, BULK, [("a.zip", archive)], album_name="B")
    run = run_of(staff_client, response)
    assert run["status"] == "succeeded"
    assert [r["code"] for r in run["results"]] == [None, "budget", "budget", "budget"]
    reason = run["results"][1]["reason"]
    assert "IMAGINEER_UPLOAD_RUN_CPU_SECONDS" in reason and "file 2 of 4" in reason
    assert run["counts"] == {"created": 1, "duplicate": 0, "rejected": 3}


def apng(size: tuple[int, int], frames: int) -> bytes:
    first, *rest = (
        PILImage.new("RGB", size, (n * 40 % 256, 90, 200)) for n in range(frames)
    )
    buf = io.BytesIO()
    first.save(buf, "PNG", save_all=True, append_images=rest)
    return buf.getvalue()


def test_a_heavy_file_is_decoded_by_the_worker_not_the_request(
    staff_client, django_capture_on_commit_callbacks, settings
) -> None:
    settings.IMAGINEER_UPLOAD_INLINE_PIXELS = 200 * 200 * 3
    heavy = apng((200, 200), 4)  # 160,000 pixels over its frames
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = post_files(
            staff_client,
            UPLOAD,
            [("light.jpg", jpeg(1)), ("heavy.png", heavy)],
            album_name="H",
        )
    assert response.status_code == 202
    body = response.json()
    run_id = body["run"]["id"]
    assert response["Location"] == body["run"]["url"] == f"/api/uploads/{run_id}"
    assert [r["status"] for r in body["results"]] == ["created", "queued"]
    assert (body["counts"]["created"], body["queued"]) == (1, 1)
    # The request stored the light file only: the heavy one waits for the worker.
    assert Image.objects.count() == 1
    for callback in callbacks:
        callback()
    run = staff_client.get(body["run"]["url"]).json()
    assert run["status"] == "succeeded"
    assert [(r["filename"], r["status"]) for r in run["results"]] == [
        ("heavy.png", "created")
    ]
    stored = Image.objects.get(pk=run["results"][0]["image_id"])
    assert (stored.is_animated, stored.width) == (True, 200)


def test_light_files_past_the_request_budget_go_to_the_worker(
    staff_client, django_capture_on_commit_callbacks, settings
) -> None:
    """Each file is light, but the request decodes no more than
    IMAGINEER_UPLOAD_REQUEST_PIXELS in all: the rest wait for the worker."""
    settings.IMAGINEER_UPLOAD_REQUEST_PIXELS = 2 * 200 * 200
    files = [
        (f"{n}.png", make_image_bytes("PNG", (200, 200), seed=n)) for n in range(4)
    ]
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = post_files(staff_client, UPLOAD, files, album_name="B")
    assert response.status_code == 202
    body = response.json()
    assert [r["status"] for r in body["results"]] == [
        "created",
        "created",
        "queued",
        "queued",
    ]
    assert Image.objects.count() == 2
    for callback in callbacks:
        callback()
    run = staff_client.get(body["run"]["url"]).json()
    assert [(r["filename"], r["status"]) for r in run["results"]] == [
        ("2.png", "created"),
        ("3.png", "created"),
    ]


def test_a_text_chunk_bomb_does_not_hide_a_heavy_file(
    staff_client, django_capture_on_commit_callbacks, settings
) -> None:
    from albums.tests.hostile import png_chunk, png_insert

    settings.IMAGINEER_UPLOAD_INLINE_PIXELS = 200 * 200 * 3
    z = zlib.compressobj(9)
    bomb = z.compress(b" " * (64 * 1024 * 1024)) + z.flush()
    heavy = png_insert(apng((200, 200), 4), png_chunk(b"zTXt", b"c\x00\x00" + bomb))
    with django_capture_on_commit_callbacks(execute=False):
        response = post_files(staff_client, UPLOAD, [("h.png", heavy)], album_name="H")
    assert response.status_code == 202
    assert response.json()["results"][0]["status"] == "queued"
    assert Image.objects.count() == 0


def test_an_ordinary_upload_still_answers_201_without_a_run(staff_client) -> None:
    response = post_files(staff_client, UPLOAD, [("a.jpg", jpeg(1))], album_name="O")
    assert response.status_code == 201
    assert (response.json()["run"], response.json()["queued"]) == (None, 0)
    assert not response.has_header("Location")


def test_a_resumed_run_counts_the_file_in_flight_at_the_crash_as_created(
    staff_client, django_capture_on_commit_callbacks
) -> None:
    """The state a `kill -9` leaves mid-file: the first result checkpointed,
    the second image stored but its result not; the worker then resumes."""
    from albums.runs import upload_run_execute
    from albums.services import image_ingest
    from imagineer_project.runs import run_claim

    archive = zip_of({"1.jpg": jpeg(1), "2.jpg": jpeg(2), "3.jpg": jpeg(3)})
    with django_capture_on_commit_callbacks(execute=False):
        response = post_files(staff_client, BULK, [("a.zip", archive)], album_name="R")
    run = UploadRun.objects.get(pk=response.json()["id"])
    run = run_claim(UploadRun, run.pk)  # attempt 1
    by = {"source_kind": "upload", "album": run.album, "uploaded_by": run.uploaded_by}
    first = image_ingest(data=jpeg(1), filename="1.jpg", **by)
    in_flight = image_ingest(data=jpeg(2), filename="2.jpg", **by)
    UploadFile.objects.create(
        run=run,
        position=0,
        filename="a.zip/1.jpg",
        status="created",
        image=first.image,
    )
    UploadRun.objects.filter(pk=run.pk).update(
        created_count=1,
        status="queued",  # what the reaper makes of a dead worker's run
    )
    run = run_claim(UploadRun, run.pk)  # attempt 2 resumes at file 2
    assert run.attempts == 2
    upload_run_execute(run)
    run.refresh_from_db()
    results = upload_run_results(run)
    assert [r["status"] for r in results] == ["created", "created", "created"]
    assert results[1]["image_id"] == in_flight.image.pk
    assert (run.created_count, run.duplicate_count) == (3, 0)


def test_a_real_duplicate_after_a_resume_is_still_a_duplicate(
    staff_client, django_capture_on_commit_callbacks
) -> None:
    from albums.runs import upload_run_execute
    from albums.services import image_ingest
    from imagineer_project.runs import run_claim

    known = image_ingest(data=jpeg(7), filename="old.jpg", source_kind="upload")
    archive = zip_of({"1.jpg": jpeg(7), "2.jpg": jpeg(8)})
    with django_capture_on_commit_callbacks(execute=False):
        response = post_files(staff_client, BULK, [("a.zip", archive)], album_name="R")
    UploadRun.objects.filter(pk=response.json()["id"]).update(attempts=1)
    run = run_claim(UploadRun, response.json()["id"])
    upload_run_execute(run)
    run.refresh_from_db()
    results = upload_run_results(run)
    assert [r["status"] for r in results] == ["duplicate", "created"]
    assert results[0]["image_id"] == known.image.pk


def test_no_stored_file_carries_a_hostile_payload(staff_client, settings) -> None:
    """The whole hostile table through the upload API: each file gets its
    verdict, and no file written to storage holds a script or document."""
    from albums.tests import hostile

    cases = hostile.CASES
    files = [(case.filename, case.build()) for case in cases]
    response = post_files(staff_client, UPLOAD, files, album_name="Hostile")
    results = response.json()["results"]
    verdicts = [r["code"] or "accept" for r in results]
    assert verdicts == [case.expect for case in cases]
    stored = [p for p in Path(settings.MEDIA_ROOT).rglob("*") if p.is_file()]
    assert stored  # the accepted files and their thumbnails
    assert [p.name for p in stored if hostile.PAYLOAD.search(p.read_bytes())] == []
