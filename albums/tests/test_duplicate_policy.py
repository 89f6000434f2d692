"""One near-duplicate policy for every door: upload, bulk upload, folder import
(`import_images`) and scrape each report a near duplicate of a library image
per file, and honour near_duplicates=keep|skip|replace_smaller the same way.

Real pictures made with Pillow: a picture and a half-size, re-encoded copy of
it are near duplicates (a few bits apart in pHash), a different picture is not.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from PIL import Image as PILImage

from albums.dedup import hamming
from albums.models import Album, Image, SourceKind
from albums.services import (
    album_get_or_create,
    image_ingest,
    near_duplicate_policy,
)
from albums.tests.test_api_upload import post_files
from imagineer_project.errors import Invalid
from imagineer_project.testing import make_image_bytes, smaller_copy
from imagineer_project.testing.site import SiteHandler, serve_site

pytestmark = pytest.mark.django_db

PICTURE = make_image_bytes("JPEG", (480, 360), seed=101)
OTHER = make_image_bytes("JPEG", (480, 360), seed=555)


SMALL = smaller_copy(PICTURE)
DOORS = ["upload", "bulk_upload", "folder_import", "scrape"]
MODES = ["keep", "skip", "replace_smaller"]
DEFAULT = "replace_smaller"  # the documented default of every door


# --- the four doors, each answering what it reports per file ---------------------


class Site(SiteHandler):
    """A one-page site whose page shows one picture (the scrape door)."""

    image = b""

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        if self.path == "/":
            body, kind = (
                b'<html><body><img src="/img/picture.jpg"></body></html>',
                ("text/html; charset=utf-8"),
            )
        elif self.path == "/img/picture.jpg":
            body, kind = Site.image, "image/jpeg"
        else:
            self.send_error(404)
            return
        self.answer(body, kind)


@pytest.fixture
def site(settings: Any) -> Iterator[str]:
    with serve_site(Site, settings) as url:
        yield url + "/"


@pytest.fixture
def door(
    request: Any, staff_client: Any, tmp_path: Path, capsys: Any, site: str
) -> Callable[[str, bytes, str | None], dict[str, Any]]:
    """door(name, picture bytes, mode) -> what that door reported for the file:
    {"status", "image_id", "near": the near_duplicate warning or None, "text":
    what a person reads}. The target album is target_album(name). Mode None:
    the option left out, so the door's own default decides."""

    def option(mode: str | None) -> dict[str, str]:
        return {} if mode is None else {"near_duplicates": mode}

    def upload(data: bytes, mode: str | None) -> dict[str, Any]:
        response = post_files(
            staff_client,
            "/api/images/upload",
            [("picture.jpg", data)],
            album_name="Target",
            **option(mode),
        )
        assert response.status_code in (200, 201), response.content
        return _from_result(response.json()["results"][0])

    def bulk_upload(data: bytes, mode: str | None) -> dict[str, Any]:
        capture = request.getfixturevalue("django_capture_on_commit_callbacks")
        with capture(execute=True):
            response = post_files(
                staff_client,
                "/api/images/bulk-upload",
                [("picture.jpg", data)],
                album_name="Target",
                **option(mode),
            )
        assert response.status_code == 202, response.content
        assert response.json()["near_duplicates"] == (mode or DEFAULT)
        run = staff_client.get(f"/api/uploads/{response.json()['id']}").json()
        assert run["status"] == "succeeded", run
        return _from_result(run["results"][0])

    def folder_import(data: bytes, mode: str | None) -> dict[str, Any]:
        folder = tmp_path / f"folder-{mode}"
        folder.mkdir()
        (folder / "picture.jpg").write_bytes(data)
        capsys.readouterr()
        call_command(
            "import_images",
            str(folder),
            album="Target",
            quiet=True,
            **option(mode),
        )
        from albums.models import UploadRun
        from albums.selectors import upload_run_results

        out, err = capsys.readouterr()
        run = UploadRun.objects.latest("id")
        result = _from_result(upload_run_results(run)[0])
        result["text"] = err  # what the command says about the file
        if result["near"] is not None:
            assert f"1 near duplicate(s) of library images ({mode or DEFAULT})" in out
        return result

    def scrape(data: bytes, mode: str | None) -> dict[str, Any]:
        from scraping.models import CrawlLogEntry
        from scraping.services import scrape_job_create
        from scraping.tasks import run_scrape_job

        Site.image = data
        job = scrape_job_create(
            url=site,
            album_name="Target",
            enqueue=False,
            politeness_delay=0,
            render="never",
            **option(mode),
        )
        run_scrape_job(job.pk)
        job.refresh_from_db()
        assert job.status == "succeeded", (job.error, job.message)
        entry = job.log.get(kind=CrawlLogEntry.Kind.IMAGE)
        status = {"saved": "created", "near_duplicate": "duplicate"}[entry.outcome]
        near = "near duplicate of image #" in entry.reason.lower()
        return {
            "status": status,
            "image_id": entry.image_id,
            "near": _near_in_text(entry.reason) if near else None,
            "text": entry.reason,
        }

    doors = {
        "upload": upload,
        "bulk_upload": bulk_upload,
        "folder_import": folder_import,
        "scrape": scrape,
    }
    return lambda name, data, mode: doors[name](data, mode)


def _from_result(result: dict[str, Any]) -> dict[str, Any]:
    near = [w for w in result.get("warnings", []) if w["code"] == "near_duplicate"]
    return {
        "status": result["status"],
        "image_id": result.get("image_id"),
        "near": near[0] if near else None,
        "text": "; ".join(w["message"] for w in result.get("warnings", [])),
    }


def _near_in_text(text: str) -> dict[str, Any]:
    """The crawl log's wording, read back into the warning's fields."""
    tail = text.lower().split("near duplicate of image #", 1)[1]
    return {"image_id": int(tail.split()[0].rstrip(";,)"))}


def target_album(name: str) -> Album:
    """The album each door fills (a scrape reuses only a scrape album)."""
    if name == "scrape":
        return album_get_or_create(
            name="Target", source_kind=Album.Kind.SCRAPE, same_kind_only=True
        )
    return album_get_or_create(name="Target", source_kind=Album.Kind.UPLOAD)


def library_holds(data: bytes, album: Album) -> Image:
    result = image_ingest(
        data=data, filename="library.jpg", source_kind=SourceKind.UPLOAD, album=album
    )
    assert result.status == "created"
    return result.image


# --- the policy at every door -----------------------------------------------------


def test_the_pictures_are_near_duplicates_and_the_control_is_not() -> None:
    from albums.ingest import inspect_image

    picture, small, other = (inspect_image(d) for d in (PICTURE, SMALL, OTHER))
    assert picture.sha256 != small.sha256
    assert hamming(picture.phash, small.phash) <= 6
    assert hamming(picture.phash, other.phash) > 6


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", DOORS)
def test_a_larger_near_duplicate_is_reported_and_the_mode_decides(
    door, name: str, mode: str
) -> None:
    album = target_album(name)
    small = library_holds(SMALL, album)

    result = door(name, PICTURE, mode)

    assert result["near"] is not None, f"{name} did not report the near duplicate"
    assert result["near"]["image_id"] == small.pk
    assert f"#{small.pk}" in result["text"]
    held = set(album.images.values_list("pk", flat=True))
    if mode == "keep":  # both stored, both in the album
        assert result["status"] == "created"
        assert held == {small.pk, result["image_id"]}
        assert Image.objects.count() == 2
    elif mode == "skip":  # nothing new: the library's copy is linked
        assert (result["status"], result["image_id"]) == ("duplicate", small.pk)
        assert held == {small.pk}
        assert Image.objects.count() == 1
    else:  # replace_smaller: the larger stays, in the smaller one's place
        assert result["status"] == "created"
        new = Image.objects.get(pk=result["image_id"])
        assert (new.width, new.height) == (480, 360)
        assert held == {new.pk}
        # The library held the smaller copy before this batch: it stays there
        # (a dataset, a set or a generation may use it), out of this album.
        assert Image.objects.filter(pk=small.pk).exists()


@pytest.mark.parametrize("name", DOORS)
def test_replace_smaller_keeps_a_larger_library_copy(door, name: str) -> None:
    album = target_album(name)
    large = library_holds(PICTURE, album)

    result = door(name, SMALL, "replace_smaller")

    assert (result["status"], result["image_id"]) == ("duplicate", large.pk)
    assert result["near"]["image_id"] == large.pk
    assert list(Image.objects.values_list("pk", flat=True)) == [large.pk]


@pytest.mark.parametrize("name", DOORS)
def test_the_default_is_replace_smaller_at_every_door(door, name: str) -> None:
    album = target_album(name)
    small = library_holds(SMALL, album)
    result = door(name, PICTURE, None)  # the option left out
    assert result["near"]["image_id"] == small.pk
    # replace_smaller: the larger new copy takes the smaller one's place.
    assert result["status"] == "created"
    assert set(album.images.values_list("pk", flat=True)) == {result["image_id"]}


@pytest.mark.parametrize("name", DOORS)
def test_a_different_picture_is_no_near_duplicate(door, name: str) -> None:
    album = target_album(name)
    library_holds(SMALL, album)
    result = door(name, OTHER, "skip")
    assert result["status"] == "created"
    assert result["near"] is None
    assert album.images.count() == 2


def flat(colour: tuple[int, int, int], fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    PILImage.new("RGB", (320, 240), colour).save(buffer, fmt)
    return buffer.getvalue()


def test_pictures_of_one_colour_are_not_near_each_other(staff_client) -> None:
    """Every flat picture hashes alike (one bit of 64): a red card back and a
    black one are two pictures, and skip must not swallow the second."""
    response = post_files(
        staff_client,
        "/api/images/upload",
        [("red.png", flat((200, 10, 10))), ("black.png", flat((5, 5, 5)))],
        album_name="Target",
        near_duplicates="skip",
    )
    red, black = response.json()["results"]
    assert (red["status"], black["status"]) == ("created", "created")
    assert black["warnings"] == []
    assert red["image_id"] != black["image_id"]


# --- the options, as each door spells them ----------------------------------------


def test_an_upload_without_the_field_uses_replace_smaller(staff_client) -> None:
    album = target_album("upload")
    small = library_holds(SMALL, album)
    response = post_files(
        staff_client, "/api/images/upload", [("p.jpg", PICTURE)], album_name="Target"
    )
    (result,) = response.json()["results"]
    assert result["warnings"][0]["action"] == "replaced"
    assert not album.images.filter(pk=small.pk).exists()


@pytest.mark.parametrize("path", ["/api/images/upload", "/api/images/bulk-upload"])
def test_an_unknown_option_is_a_422_naming_the_field(staff_client, path) -> None:
    response = post_files(
        staff_client,
        path,
        [("p.jpg", PICTURE)],
        album_name="Target",
        near_duplicates="merge",
    )
    assert response.status_code == 422
    assert "near_duplicates" in response.content.decode()
    assert not Image.objects.exists()


def test_the_services_refuse_an_unknown_mode() -> None:
    with pytest.raises(Invalid, match="near_duplicates must be one of"):
        near_duplicate_policy("merge")


def test_the_cli_flag_refuses_an_unknown_mode(tmp_path) -> None:
    from django.core.management import CommandError

    for command in (
        ["import_images", str(tmp_path), "--album", "X"],
        ["scrape", "http://example.com/", "--album", "X"],
    ):
        with pytest.raises(CommandError, match="near-duplicates"):
            call_command(*command, "--near-duplicates", "merge")


def test_the_admin_upload_form_offers_the_choice(
    admin_client, django_capture_on_commit_callbacks
) -> None:
    album = target_album("upload")
    small = library_holds(SMALL, album)
    page = admin_client.get(f"/admin/albums/album/{album.pk}/upload/")
    assert 'name="near_duplicates"' in page.content.decode()
    for value in MODES:
        assert f'value="{value}"' in page.content.decode()
    from django.core.files.uploadedfile import SimpleUploadedFile

    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            f"/admin/albums/album/{album.pk}/upload/",
            {
                "files": [SimpleUploadedFile("p.jpg", PICTURE)],
                "near_duplicates": "skip",
            },
        )
    assert response.status_code == 302
    from albums.models import UploadRun

    run = UploadRun.objects.get()
    assert run.near_duplicates == "skip"
    assert list(Image.objects.values_list("pk", flat=True)) == [small.pk]
    # The run's page says which library image the file was near.
    page = admin_client.get(f"/admin/albums/uploadrun/{run.pk}/change/")
    assert f"Near duplicate of image #{small.pk}" in page.content.decode()


def test_a_batch_catches_its_own_near_duplicates(staff_client) -> None:
    """The second file of one request is near the first one stored."""
    response = post_files(
        staff_client,
        "/api/images/upload",
        [("small.jpg", SMALL), ("big.jpg", PICTURE)],
        album_name="Target",
        near_duplicates="replace_smaller",
    )
    small, big = response.json()["results"]
    assert small["warnings"] == []
    assert big["warnings"][0]["image_id"] == small["image_id"]
    assert big["warnings"][0]["action"] == "replaced"
    assert list(Image.objects.values_list("pk", flat=True)) == [big["image_id"]]


def test_a_replaced_copy_held_by_another_album_stays_there(staff_client) -> None:
    other = album_get_or_create(name="Elsewhere")
    small = library_holds(SMALL, other)
    target_album("upload")
    response = post_files(
        staff_client,
        "/api/images/upload",
        [("p.jpg", PICTURE)],
        album_name="Target",
        near_duplicates="replace_smaller",
    )
    (result,) = response.json()["results"]
    assert result["warnings"][0]["action"] == "replaced"
    assert list(other.images.values_list("pk", flat=True)) == [small.pk]
    target = Album.objects.get(name="Target")
    assert list(target.images.values_list("pk", flat=True)) == [result["image_id"]]


def test_a_library_copy_replaced_in_an_album_keeps_its_labels(staff_client) -> None:
    """A copy the library held before the upload is replaced in the album but
    not deleted, so its captions stay with it (a copy the same batch stored
    goes, and its captions move: scraping/tests/test_runs.py)."""
    from labeling.models import Label
    from labeling.services import label_create

    album = target_album("upload")
    small = library_holds(SMALL, album)
    label_create(image=small, kind="caption", text="The Fool at the cliff edge")
    response = post_files(
        staff_client, "/api/images/upload", [("p.jpg", PICTURE)], album_name="Target"
    )
    (result,) = response.json()["results"]
    assert result["warnings"][0]["action"] == "replaced"
    assert list(album.images.values_list("pk", flat=True)) == [result["image_id"]]
    assert Label.objects.get(image=small).text == "The Fool at the cliff edge"
