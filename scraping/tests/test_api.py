"""/api/scrape-jobs: start, list, detail, crawl log, cancel and clean up."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from albums.models import Album, Image
from albums.services import album_add_images, image_thumbnail_key, thumbnail_key
from albums.tests.builders import make_album, make_image
from scraping.models import CrawlLogEntry, ScrapeJob
from scraping.tests.builders import log, make_job

pytestmark = pytest.mark.django_db

JOBS = "/api/scrape-jobs"
CALLERS = ["anonymous", "user", "staff", "token"]
ENDED = ["succeeded", "failed", "cancelled"]
DEFAULT_OPTIONS = {
    "max_depth": 2,
    "max_pages": 50,
    "max_images": 500,
    "render": "auto",
    "min_width": 128,
    "min_height": 128,
    "min_megapixels": 0.0,
    "max_aspect_ratio": 4.0,
    "formats": [],
    "near_duplicate_distance": 6,
    "near_duplicates": "replace_smaller",
    "respect_robots": True,
    "politeness_delay": 1.0,
    "per_host_concurrency": 2,
    "max_seconds": 1800,
    "max_total_bytes": 2 * 1024**3,
}


def iso(value: Any) -> str | None:
    return None if value is None else DjangoJSONEncoder().default(value)


def post_json(client: Client, path: str, body: Any) -> Any:
    return client.post(path, data=json.dumps(body), content_type="application/json")


def stored_paths(image: Image) -> list[Path]:
    root = Path(django_settings.MEDIA_ROOT)
    sizes = django_settings.IMAGINEER_THUMBNAIL_SIZES
    return [
        root / image.file.name,
        *(root / thumbnail_key(image.sha256, s) for s in sizes),
    ]


def entry_json(entry: CrawlLogEntry) -> dict[str, Any]:
    return {
        "id": entry.pk,
        "kind": entry.kind,
        "url": entry.url,
        "page_url": entry.page_url,
        "outcome": entry.outcome,
        "reason": entry.reason,
        "status_code": entry.status_code,
        "bytes": entry.bytes,
        "elapsed_ms": entry.elapsed_ms,
        "image_id": entry.image_id,
        "created": iso(entry.created),
    }


# --- who may call -----------------------------------------------------------------


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize(
    ("method", "path", "ok"),
    [
        ("get", "", 200),
        ("get", "/{job}", 200),
        ("get", "/{job}/log", 200),
        ("post", "/{job}/cancel", 200),
        ("delete", "/{job}", 200),
    ],
)
def test_every_endpoint_is_staff_only(
    call_as: Any, caller: str, method: str, path: str, ok: int
) -> None:
    # A queued job can be cancelled; the delete test gets an ended one.
    job = make_job(status="succeeded" if method == "delete" else "queued")

    response = getattr(call_as(caller), method)(JOBS + path.format(job=job.pk))

    expected = {"anonymous": 401, "user": 403, "staff": ok, "token": ok}[caller]
    assert response.status_code == expected
    if expected != ok:
        job.refresh_from_db()
        assert job.status == ("succeeded" if method == "delete" else "queued")


@pytest.mark.parametrize("caller", CALLERS)
def test_starting_a_job_is_staff_only(call_as: Any, caller: str) -> None:
    body = {"url": "https://cards.example/", "album_name": "Cards"}

    response = post_json(call_as(caller), JOBS, body)

    expected = {"anonymous": 401, "user": 403, "staff": 201, "token": 201}[caller]
    assert response.status_code == expected
    assert ScrapeJob.objects.count() == (1 if expected == 201 else 0)


# --- start ------------------------------------------------------------------------


def test_start_queues_a_job_with_the_polite_defaults(
    call_as: Any, staff_user: Any, django_capture_on_commit_callbacks: Any
) -> None:
    body = {"url": "https://cards.example/gallery", "album_name": "  Tarot  "}

    with django_capture_on_commit_callbacks(execute=False) as enqueued:
        response = post_json(call_as("token"), JOBS, body)

    assert response.status_code == 201
    job = ScrapeJob.objects.get()
    album = Album.objects.get()
    assert (job.start_url, job.album_name, job.album, job.created_by) == (
        "https://cards.example/gallery",
        "Tarot",
        album,
        staff_user,
    )
    assert (album.name, album.source_kind) == ("Tarot", Album.Kind.SCRAPE)
    assert len(enqueued) == 1  # handed to the worker once the request commits
    created = response.json()
    assert created["id"] == job.pk
    assert created["status"] == "queued"
    assert created["album"] == {"id": album.pk, "slug": album.slug, "name": "Tarot"}
    assert created["options"] == DEFAULT_OPTIONS
    assert created["recent_log"] == []


def test_start_takes_every_option(call_as: Any) -> None:
    options = {
        "max_depth": 0,
        "max_pages": 10_000,
        "max_images": 1,
        "render": "always",
        "min_width": 300,
        "min_height": 200,
        "min_megapixels": 0.5,
        "max_aspect_ratio": 2.5,
        "formats": ["PNG", "JPEG", "PNG"],
        "near_duplicate_distance": 0,
        "near_duplicates": "keep",
        "respect_robots": False,
        "politeness_delay": 0,
        "per_host_concurrency": 4,
        "max_seconds": 60,
        "max_total_bytes": 10 * 1024**2,
    }
    body = {"url": "http://cards.example", "album_name": "Cards", **options}

    response = post_json(call_as("staff"), JOBS, body)

    assert response.status_code == 201
    expected = options | {"formats": ["PNG", "JPEG"], "politeness_delay": 0.0}
    assert response.json()["options"] == expected
    job = ScrapeJob.objects.get()
    assert {name: getattr(job, name) for name in options} == expected


def test_start_reuses_a_scrape_album_of_the_same_name(call_as: Any) -> None:
    album = make_album(name="Cards", source_kind="scrape")

    response = post_json(
        call_as("staff"), JOBS, {"url": "https://a.example/", "album_name": "Cards"}
    )

    assert response.json()["album"]["id"] == album.pk
    assert Album.objects.count() == 1


def test_start_never_fills_a_manual_album_that_cleanup_would_delete(
    call_as: Any,
) -> None:
    manual = make_album(name="Cards")

    response = post_json(
        call_as("staff"), JOBS, {"url": "https://a.example/", "album_name": "Cards"}
    )

    album = response.json()["album"]
    assert album["id"] != manual.pk
    assert (album["name"], album["slug"]) == ("Cards", "cards-2")


def test_start_with_album_id_fills_that_very_album(call_as: Any) -> None:
    mine = make_album(name="My tarot")

    response = post_json(
        call_as("staff"), JOBS, {"url": "https://a.example/", "album_id": mine.pk}
    )

    assert response.status_code == 201
    assert response.json()["album"]["id"] == mine.pk
    assert ScrapeJob.objects.get().album_name == "My tarot"


def test_start_into_an_album_that_is_not_there_is_404(call_as: Any) -> None:
    response = post_json(
        call_as("staff"), JOBS, {"url": "https://a.example/", "album_id": 999}
    )

    assert response.status_code == 404
    assert not ScrapeJob.objects.exists()


def test_start_with_neither_album_name_nor_album_id_is_422(call_as: Any) -> None:
    response = post_json(call_as("staff"), JOBS, {"url": "https://a.example/"})

    assert response.status_code == 422
    (error,) = response.json()["details"]["errors"]
    assert "give album_name (or album_id)" in error["msg"]
    assert not ScrapeJob.objects.exists()


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"url": "ftp://cards.example/"}, "url", "http:// or https://"),
        ({"url": "javascript:alert(1)"}, "url", "http:// or https://"),
        ({"url": "cards.example/gallery"}, "url", "http:// or https://"),
        ({"url": "https://"}, "url", "must name a host"),
        ({"url": "https://cards.example/a b"}, "url", "spaces"),
        ({"url": "http://[::1"}, "url", "not a valid URL"),
        ({"url": "https://x.example/" + "a" * 2048}, "url", "at most 2048"),
        ({"album_name": "   "}, "album_name", "at least 1"),
        ({"album_name": "x" * 201}, "album_name", "at most 200"),
        ({"max_depth": 11}, "max_depth", "less than or equal to 10"),
        ({"max_depth": -1}, "max_depth", "greater than or equal to 0"),
        ({"max_pages": 0}, "max_pages", "greater than or equal to 1"),
        ({"max_pages": 10_001}, "max_pages", "less than or equal to 10000"),
        ({"max_images": 0}, "max_images", "greater than or equal to 1"),
        ({"max_images": 100_001}, "max_images", "less than or equal to 100000"),
        ({"render": "sometimes"}, "render", "'auto', 'always' or 'never'"),
        ({"formats": ["TIFF"]}, "formats", "'JPEG', 'PNG', 'WEBP', 'GIF' or 'BMP'"),
        ({"min_width": -5}, "min_width", "greater than or equal to 0"),
        ({"min_megapixels": -1}, "min_megapixels", "greater than or equal to 0"),
        ({"max_aspect_ratio": 0.5}, "max_aspect_ratio", "greater than or equal to 1"),
        ({"near_duplicate_distance": 33}, "near_duplicate_distance", "32"),
        ({"near_duplicates": "merge"}, "near_duplicates", "'keep', 'skip' or"),
        ({"politeness_delay": -1}, "politeness_delay", "greater than or equal to 0"),
        ({"per_host_concurrency": 0}, "per_host_concurrency", "greater than"),
        ({"max_depth": "deep"}, "max_depth", "valid integer"),
    ],
)
def test_start_refuses_bad_requests(
    call_as: Any, change: dict[str, Any], field: str, message: str
) -> None:
    body = {"url": "https://cards.example/", "album_name": "Cards"} | change

    response = post_json(call_as("staff"), JOBS, body)

    assert response.status_code == 422
    errors = response.json()["details"]["errors"]
    assert [e["loc"][:3] for e in errors] == [["body", "payload", field]]
    assert message in errors[0]["msg"]
    assert not ScrapeJob.objects.exists()


def test_start_needs_a_url(call_as: Any) -> None:
    response = post_json(call_as("staff"), JOBS, {"album_name": "Cards"})

    assert response.status_code == 422
    assert response.json()["details"]["errors"][0]["loc"] == ["body", "payload", "url"]


# --- read -------------------------------------------------------------------------


def test_detail_shows_progress_counts_options_and_the_recent_log(call_as: Any) -> None:
    album = make_album(name="Cards")
    image = make_image(album=album, seed=1)
    job = make_job(
        album=album,
        status="running",
        stage=ScrapeJob.Stage.DOWNLOADING,
        progress_done=3,
        progress_total=12,
        message="Downloading images",
        pages_fetched=4,
        images_found=12,
        images_downloaded=3,
        images_valid=2,
        images_duplicate=1,
        images_saved=1,
        images_failed=1,
        bytes_downloaded=123_456,
        formats=["PNG"],
        attempts=1,
    )
    entries = [
        log(job, 1, status_code=200, bytes=5120, elapsed_ms=40),
        log(
            job,
            2,
            kind=CrawlLogEntry.Kind.IMAGE,
            outcome=CrawlLogEntry.Outcome.SAVED,
            page_url="https://cards.example/page/1",
            image=image,
        ),
        log(job, 3, outcome=CrawlLogEntry.Outcome.SKIPPED, reason="robots.txt"),
    ]
    job.refresh_from_db()

    response = call_as("staff").get(f"{JOBS}/{job.pk}")

    assert response.status_code == 200
    assert response.json() == {
        "id": job.pk,
        "start_url": "https://cards.example/",
        "album_name": "Cards",
        "album": {"id": album.pk, "slug": "cards", "name": "Cards"},
        "status": "running",
        "stage": "downloading",
        "progress": {"done": 3, "total": 12, "percent": 25},
        "counts": {
            "pages_fetched": 4,
            "images_found": 12,
            "downloaded": 3,
            "valid": 2,
            "duplicate": 1,
            "saved": 1,
            "failed": 1,
            "bytes_downloaded": 123_456,
        },
        "options": DEFAULT_OPTIONS | {"formats": ["PNG"]},
        "message": "Downloading images",
        "error": "",
        "cancel_requested": False,
        "attempts": 1,
        "created": iso(job.created),
        "started_at": None,
        "heartbeat_at": None,
        "finished_at": None,
        "recent_log": [entry_json(e) for e in reversed(entries)],
    }


def test_detail_shows_only_the_last_50_log_entries(call_as: Any) -> None:
    job = make_job()
    entries = [log(job, n) for n in range(60)]

    recent = call_as("staff").get(f"{JOBS}/{job.pk}").json()["recent_log"]

    assert [e["id"] for e in recent] == [e.pk for e in reversed(entries[10:])]


def test_detail_of_a_job_whose_album_is_gone(call_as: Any) -> None:
    job = make_job(status="failed", error=f"OSError: {django_settings.MEDIA_ROOT}/x")

    body = call_as("staff").get(f"{JOBS}/{job.pk}").json()

    assert body["album"] is None
    assert body["error"] == "OSError: <media>/x"


def test_an_unknown_job_is_404(call_as: Any) -> None:
    for method, path in [("get", ""), ("get", "/log"), ("post", "/cancel")]:
        response = getattr(call_as("staff"), method)(f"{JOBS}/4242{path}")
        assert response.status_code == 404
        assert response.json()["error"] == "Scrape job 4242 not found."
    assert call_as("staff").delete(f"{JOBS}/4242").status_code == 404


def test_list_is_newest_first_and_pages_by_cursor(call_as: Any) -> None:
    jobs = [make_job(start_url=f"https://s{n}.example/") for n in range(5)]
    client = call_as("staff")

    first = client.get(f"{JOBS}?limit=3").json()
    second = client.get(f"{JOBS}?limit=3&cursor={first['next_cursor']}").json()

    newest_first = [j.pk for j in reversed(jobs)]
    assert [item["id"] for item in first["items"]] == newest_first[:3]
    assert [item["id"] for item in second["items"]] == newest_first[3:]
    assert second["next_cursor"] is None
    assert "recent_log" not in first["items"][0]


def test_list_costs_one_query_however_many_albums(call_as: Any) -> None:
    client = call_as("token")
    client.get(JOBS)  # warm the token lookup path

    def queries() -> int:
        with CaptureQueriesContext(connection) as ctx:
            assert client.get(f"{JOBS}?limit=50").status_code == 200
        return len(ctx)

    make_job(album=make_album(name="A"))
    few = queries()
    for n in range(10):
        make_job(album=make_album(name=f"B{n}"))

    assert queries() == few


# --- crawl log --------------------------------------------------------------------


def test_log_pages_in_crawl_order(call_as: Any) -> None:
    job, other = make_job(), make_job()
    entries = [log(job, n) for n in range(5)]
    log(other, 99)
    client = call_as("staff")

    first = client.get(f"{JOBS}/{job.pk}/log?limit=3").json()
    cursor = first["next_cursor"]
    second = client.get(f"{JOBS}/{job.pk}/log?limit=3&cursor={cursor}").json()

    assert first["items"] == [entry_json(e) for e in entries[:3]]
    assert second == {
        "items": [entry_json(e) for e in entries[3:]],
        "next_cursor": None,
    }


def test_log_filters_by_kind_and_outcome(call_as: Any) -> None:
    job = make_job()
    log(job, 1)
    saved = log(job, 2, kind="image", outcome="saved")
    skipped = log(job, 3, kind="image", outcome="skipped", reason="off-site")
    robots = log(job, 4, kind="robots", outcome="fetched")
    client = call_as("staff")

    def ids(query: str) -> list[int]:
        response = client.get(f"{JOBS}/{job.pk}/log?{query}")
        assert response.status_code == 200
        return [item["id"] for item in response.json()["items"]]

    assert ids("kind=image") == [saved.pk, skipped.pk]
    assert ids("outcome=skipped") == [skipped.pk]
    assert ids("kind=image&outcome=saved") == [saved.pk]
    assert ids("kind=robots") == [robots.pk]
    assert client.get(f"{JOBS}/{job.pk}/log?kind=video").status_code == 422


# --- cancel -----------------------------------------------------------------------


def test_cancel_a_queued_job_ends_it_at_once(call_as: Any) -> None:
    job = make_job()

    response = call_as("staff").post(f"{JOBS}/{job.pk}/cancel")

    assert response.status_code == 200
    assert (response.json()["status"], response.json()["cancel_requested"]) == (
        "cancelled",
        True,
    )
    job.refresh_from_db()
    assert job.status == "cancelled"
    assert job.finished_at is not None


def test_cancel_a_running_job_asks_it_to_stop(call_as: Any) -> None:
    job = make_job(status="running")

    body = call_as("staff").post(f"{JOBS}/{job.pk}/cancel").json()

    assert (body["status"], body["cancel_requested"]) == ("running", True)


@pytest.mark.parametrize("status", ENDED)
def test_cancel_an_ended_job_is_409(call_as: Any, status: str) -> None:
    job = make_job(status=status)

    response = call_as("staff").post(f"{JOBS}/{job.pk}/cancel")

    assert response.status_code == 409
    assert response.json()["error"] == (
        f"Scrape job {job.pk} already ended ({status})."
    )


# --- clean up ---------------------------------------------------------------------


def test_cleanup_removes_the_album_and_images_no_other_album_holds(
    call_as: Any, django_capture_on_commit_callbacks: Any
) -> None:
    album = make_album(name="Scraped", source_kind=Album.Kind.SCRAPE)
    other = make_album(name="Favourites")
    only_here = [make_image(album=album, seed=n) for n in (1, 2)]
    shared = make_image(album=album, seed=3)
    album_add_images(album=other, images=[shared])
    for image in [*only_here, shared]:
        image_thumbnail_key(image, 512)  # a size made on first use must go too
    job = make_job(album=album, status="succeeded")
    log(job, 1, kind="image", outcome="saved", image=only_here[0])

    with django_capture_on_commit_callbacks(execute=True):
        response = call_as("staff").delete(f"{JOBS}/{job.pk}")

    assert response.status_code == 200
    assert response.json() == {"images_deleted": 2, "images_kept": 1}
    assert not ScrapeJob.objects.exists()
    assert not CrawlLogEntry.objects.exists()
    assert list(Album.objects.all()) == [other]
    assert list(Image.objects.all()) == [shared]
    assert not any(p.exists() for image in only_here for p in stored_paths(image))
    assert all(p.exists() for p in stored_paths(shared))


def test_cleanup_of_a_job_without_an_album_deletes_the_job(call_as: Any) -> None:
    job = make_job(status="failed")
    log(job, 1)

    response = call_as("staff").delete(f"{JOBS}/{job.pk}")

    assert response.json() == {"images_deleted": 0, "images_kept": 0}
    assert not ScrapeJob.objects.exists()


@pytest.mark.parametrize("status", ["queued", "running"])
def test_cleanup_of_an_active_job_is_409(call_as: Any, status: str) -> None:
    album = make_album(name="Scraped")
    make_image(album=album, seed=1)
    job = make_job(album=album, status=status)

    response = call_as("staff").delete(f"{JOBS}/{job.pk}")

    assert response.status_code == 409
    assert response.json()["error_code"] == "job_active"
    assert ScrapeJob.objects.filter(pk=job.pk).exists()
    assert Image.objects.count() == 1


def test_cleanup_waits_for_a_retry_filling_the_same_album(call_as: Any) -> None:
    album = make_album(name="Scraped")
    failed = make_job(album=album, status="failed")
    retry = make_job(album=album, status="running")

    response = call_as("staff").delete(f"{JOBS}/{failed.pk}")

    assert response.status_code == 409
    assert (
        f"Scrape job {retry.pk} is still filling the same album"
        in (response.json()["error"])
    )
    assert Album.objects.filter(pk=album.pk).exists()


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:8000/", "http://localhost/gallery", "http://[::1]/"],
)
def test_every_door_refuses_a_start_url_the_crawler_would_refuse(
    call_as: Any, admin_client: Any, settings: Any, url: str
) -> None:
    """The API, the admin and the CLI go through scrape_job_create: a loopback
    start URL is refused at once by each, not queued for the crawler to refuse."""
    from django.core.management import CommandError, call_command

    settings.SCRAPER_ALLOW_PRIVATE_ADDRESSES = False
    api = post_json(call_as("token"), JOBS, {"url": url, "album_name": "Local"})
    assert api.status_code == 422
    assert api.json()["error_code"] == "scrape_job_invalid"
    assert list(api.json()["details"]["errors"]) == ["url"]

    form = admin_client.post(
        "/admin/scraping/scrapejob/add/",
        {
            "start_url": url,
            "album_name": "Local",
            "max_depth": 2,
            "max_pages": 50,
            "max_images": 500,
            "render": "auto",
            "min_width": 128,
            "min_height": 128,
            "min_megapixels": 0,
            "max_aspect_ratio": 4,
            "near_duplicate_distance": 6,
            "respect_robots": "on",
            "politeness_delay": 1,
            "per_host_concurrency": 2,
            "max_seconds": 3600,
            "max_total_bytes": 2 * 1024**3,
        },
    )
    assert list(form.context["adminform"].form.errors) == ["start_url"]

    with pytest.raises(CommandError, match="Refusing"):
        call_command("scrape", url, album="Local")

    settings.SCRAPER_ALLOW_PRIVATE_ADDRESSES = True  # local use and tests
    allowed = post_json(call_as("token"), JOBS, {"url": url, "album_name": "Local"})
    assert allowed.status_code == 201
    assert ScrapeJob.objects.count() == 1


def test_cleanup_of_a_scrape_into_my_album_takes_out_only_what_it_put_in(
    call_as: Any, staff_user: Any, django_capture_on_commit_callbacks: Any
) -> None:
    """ "Scrape into" fills a person's own album; cleaning the job up keeps the
    album and the images that were there before (even one the crawl met
    again), and deletes only the images the crawl brought."""
    from scraping.services import scrape_job_create

    mine = make_album(name="My tarot")
    before = make_image(album=mine, seed=1)
    job = scrape_job_create(
        url="https://cards.example/", album=mine, created_by=staff_user, enqueue=False
    )
    assert (job.album, job.album_name) == (mine, "My tarot")
    brought = [make_image(seed=n) for n in (2, 3)]
    album_add_images(album=mine, images=brought)
    log(job, 1, kind="image", outcome="duplicate", image=before)
    for n, image in enumerate(brought, start=2):
        log(job, n, kind="image", outcome="saved", image=image)
    ScrapeJob.objects.filter(pk=job.pk).update(status="succeeded")

    with django_capture_on_commit_callbacks(execute=True):
        response = call_as("staff").delete(f"{JOBS}/{job.pk}")

    assert response.json() == {"images_deleted": 2, "images_kept": 0}
    assert list(Album.objects.all()) == [mine]
    assert list(mine.memberships.values_list("image_id", flat=True)) == [before.pk]
    assert list(Image.objects.all()) == [before]
    assert not any(p.exists() for image in brought for p in stored_paths(image))
