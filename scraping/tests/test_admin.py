"""Admin for scrape jobs (start, follow, cancel, retry, clean up) and the crawl log."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from albums.models import Album, Image
from albums.services import album_add_images, thumbnail_key
from albums.tests.builders import make_album, make_image
from imagineer_project.runs import BaseRun
from imagineer_project.testing import admin_listed as listed
from imagineer_project.testing import query_count
from scraping.models import CrawlLogEntry, ScrapeJob
from scraping.tests.builders import log, make_job

pytestmark = pytest.mark.django_db

JOBS = "/admin/scraping/scrapejob/"
LOG = "/admin/scraping/crawllogentry/"


def stored_paths(image: Image) -> list[Path]:
    root = Path(settings.MEDIA_ROOT)
    sizes = settings.IMAGINEER_THUMBNAIL_SIZES
    return [
        root / image.file.name,
        *(root / thumbnail_key(image.sha256, s) for s in sizes),
    ]


def messages_of(response: Any) -> list[str]:
    return [str(m) for m in response.context["messages"]]


ADD_FORM = {
    "start_url": "https://cards.example/gallery",
    "album_name": "Tarot",
    "max_depth": "1",
    "max_pages": "20",
    "max_images": "100",
    "render": "never",
    "max_seconds": "600",
    "min_width": "200",
    "min_height": "150",
    "min_megapixels": "0.1",
    "max_aspect_ratio": "3",
    "formats": ["JPEG", "PNG"],
    "near_duplicate_distance": "4",
    "respect_robots": "on",
    "politeness_delay": "2",
    "per_host_concurrency": "1",
}


# --- changelist -------------------------------------------------------------------


def test_changelist_shows_progress_counts_and_the_album(admin_client: Any) -> None:
    album = make_album(name="Tarot")
    make_job(
        album=album,
        status="running",
        stage="downloading",
        progress_done=3,
        progress_total=10,
        pages_fetched=7,
        images_saved=2,
    )

    response = admin_client.get(JOBS)

    assert response.status_code == 200
    assert "3/10" in response.text
    assert f'href="/admin/albums/album/{album.pk}/change/">Tarot</a>' in response.text
    assert "Downloading images" in response.text


def test_changelist_queries_do_not_grow_with_jobs(admin_client: Any) -> None:
    for n in range(2):
        job = make_job(album=make_album(name=f"A{n}"), status="running")
        log(job, n)
    few = query_count(admin_client, JOBS)
    for n in range(10):
        make_job(album=make_album(name=f"B{n}"), status="succeeded")
    make_job(status="failed")  # no album

    assert query_count(admin_client, JOBS) == few
    assert len(listed(admin_client.get(JOBS))) == 13


@pytest.mark.parametrize(
    ("query", "wanted"), [("tarot-site", "tarot"), ("Moon cards", "moon")]
)
def test_search_by_start_url_and_album_name(
    admin_client: Any, query: str, wanted: str
) -> None:
    jobs = {
        "tarot": make_job(start_url="https://tarot-site.example/", album_name="Tarot"),
        "moon": make_job(start_url="https://m.example/", album_name="Moon cards"),
    }

    assert listed(admin_client.get(JOBS, {"q": query})) == [jobs[wanted].pk]


def test_filter_by_status_and_stage(admin_client: Any) -> None:
    running = make_job(status="running", stage="crawling")
    failed = make_job(status="failed", stage="downloading")

    assert listed(admin_client.get(JOBS, {"status__exact": "failed"})) == [failed.pk]
    assert listed(admin_client.get(JOBS, {"stage__exact": "crawling"})) == [running.pk]


# --- add: starting a scrape -------------------------------------------------------


def test_add_page_offers_the_options_and_format_checkboxes(admin_client: Any) -> None:
    response = admin_client.get(f"{JOBS}add/")

    assert response.status_code == 200
    assert "Start a scrape" in response.text
    for name in ("start_url", "album_name", "max_depth", "politeness_delay"):
        assert f'name="{name}"' in response.text
    for fmt in ("JPEG", "PNG", "WEBP", "GIF", "BMP"):
        assert f'type="checkbox" name="formats" value="{fmt}"' in response.text
    # Counters and state are the worker's: never fields of the form.
    assert 'name="pages_fetched"' not in response.text
    assert 'name="status"' not in response.text


def test_the_add_page_button_says_it_starts_the_scrape(admin_client: Any) -> None:
    text = admin_client.get(f"{JOBS}add/").text

    assert (
        '<input type="submit" value="Start scrape" class="default" name="_save">'
        in (text)
    )
    assert 'value="Save"' not in text


def test_scrape_into_an_album_presets_its_name(admin_client: Any) -> None:
    scraped = make_album(name="Tarot scans", source_kind=Album.Kind.SCRAPE)

    response = admin_client.get(f"{JOBS}add/?album={scraped.pk}")

    assert response.context["adminform"].form["album_name"].value() == "Tarot scans"
    assert "The images go into the album “Tarot scans”." in response.text
    assert "takes out only the images it added" not in response.text


def test_scrape_into_an_upload_album_says_where_the_images_go(
    admin_client: Any,
) -> None:
    mine = make_album(name="My tarot")

    response = admin_client.get(f"{JOBS}add/?album={mine.pk}")

    assert response.context["adminform"].form["album_name"].value() == "My tarot"
    assert response.context["adminform"].form["into_album"].value() == mine.pk
    assert "takes out only the images it added" in response.text


def test_a_missing_album_presets_nothing(admin_client: Any) -> None:
    for query in ("?album=999", "?album=x"):
        response = admin_client.get(f"{JOBS}add/{query}")

        assert response.status_code == 200
        assert response.context["adminform"].form["album_name"].value() is None


def test_add_starts_a_job_and_follows_it(
    admin_client: Any, admin_user: Any, django_capture_on_commit_callbacks: Any
) -> None:

    with django_capture_on_commit_callbacks(execute=False) as enqueued:
        response = admin_client.post(f"{JOBS}add/", ADD_FORM)

    job = ScrapeJob.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"{JOBS}{job.pk}/change/"
    assert len(enqueued) == 1
    assert (job.start_url, job.album_name, job.created_by) == (
        "https://cards.example/gallery",
        "Tarot",
        admin_user,
    )
    assert job.album == Album.objects.get(name="Tarot")
    assert (job.max_depth, job.render, job.formats, job.politeness_delay) == (
        1,
        "never",
        ["JPEG", "PNG"],
        2.0,
    )
    assert (job.min_megapixels, job.near_duplicate_distance) == (0.1, 4)
    assert job.status == BaseRun.Status.QUEUED


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"start_url": "ftp://cards.example/"}, "start_url", "Enter a valid URL."),
        ({"start_url": "javascript:alert(1)"}, "start_url", "Enter a valid URL."),
        ({"album_name": ""}, "album_name", "This field is required."),
        # The rest are scraping.services' checks, the same for every door.
        ({"max_depth": "11"}, "max_depth", "From 0 to 10"),
        ({"max_pages": "0"}, "max_pages", "From 1 to 10000"),
        ({"max_images": "100001"}, "max_images", "From 1 to 100000"),
        ({"formats": ["TIFF"]}, "formats", "Select a valid choice."),
        ({"politeness_delay": "-1"}, "politeness_delay", "From 0 to 60"),
        ({"start_url": "http://127.0.0.1/"}, "start_url", "private or loopback"),
    ],
)
def test_add_refuses_what_the_api_refuses(
    admin_client: Any, change: dict[str, Any], field: str, message: str
) -> None:
    response = admin_client.post(f"{JOBS}add/", ADD_FORM | change)

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert list(errors) == [field]
    assert message in " ".join(errors[field])
    assert not ScrapeJob.objects.exists()


# --- change: following a job ------------------------------------------------------


def test_active_job_page_refreshes_and_shows_progress_and_the_log(
    admin_client: Any,
) -> None:
    album = make_album(name="Tarot")
    image = make_image(album=album, seed=1)
    job = make_job(
        album=album,
        status="running",
        stage="downloading",
        progress_done=1,
        progress_total=4,
        images_found=9,
        message="Downloading 4 images",
    )
    log(job, 1, status_code=200, bytes=2048, elapsed_ms=31)
    log(
        job,
        2,
        kind="image",
        outcome="saved",
        url="https://cards.example/img/tower.jpg",
        image=image,
    )
    log(job, 3, outcome="skipped", reason="robots.txt disallows /private/")
    log(job, 4, url="javascript:alert(document.cookie)", outcome="skipped")

    response = admin_client.get(f"{JOBS}{job.pk}/change/")

    text = response.text
    assert response.status_code == 200
    assert '<meta http-equiv="refresh" content="3">' in text
    assert '<progress max="100" value="25"' in text
    assert "Downloading 4 images" in text
    assert f'action="{JOBS}{job.pk}/cancel/"' in text
    assert f"{JOBS}{job.pk}/retry/" not in text
    assert f"{JOBS}{job.pk}/cleanup/" not in text
    assert 'name="_save"' not in text
    # The log: linked URLs, reasons, the saved image, and no javascript: link.
    assert 'href="https://cards.example/img/tower.jpg"' in text
    assert f'href="/admin/albums/image/{image.pk}/change/">#{image.pk}</a>' in text
    assert "robots.txt disallows /private/" in text
    assert 'href="javascript:' not in text
    assert "javascript:alert(document.cookie)" in text
    # Times and sizes never break mid-token (URLs may).
    assert '<td class="nowrap">2.0\xa0KB</td>' in text
    assert '<td class="nowrap">31</td>' in text
    assert f'href="{LOG}?job__id__exact={job.pk}"' in text
    # The album, public and in the admin.
    assert f'href="/albums/{album.slug}/"' in text
    assert f'href="/admin/albums/album/{album.pk}/change/"' in text


def test_the_live_log_shows_the_last_200_entries_oldest_first(
    admin_client: Any,
) -> None:
    job = make_job(status="running")
    CrawlLogEntry.objects.bulk_create(
        CrawlLogEntry(
            job=job, kind="page", url=f"https://cards.example/p{n}/", outcome="fetched"
        )
        for n in range(210)
    )

    text = admin_client.get(f"{JOBS}{job.pk}/change/").text

    assert "The last 200 entries, oldest first" in text
    assert "https://cards.example/p209/" in text
    assert "https://cards.example/p10/" in text
    assert "https://cards.example/p9/" not in text
    assert text.index("/p10/") < text.index("/p11/") < text.index("/p209/")


def test_change_page_queries_do_not_grow_with_the_log(admin_client: Any) -> None:
    job = make_job(album=make_album(), status="running")
    images = [make_image(seed=n) for n in range(3)]
    for n, image in enumerate(images):
        log(job, n, kind="image", outcome="saved", image=image)
    few = query_count(admin_client, f"{JOBS}{job.pk}/change/")
    for n in range(30):
        log(job, 100 + n, kind="image", outcome="near_duplicate", image=images[0])

    assert query_count(admin_client, f"{JOBS}{job.pk}/change/") == few


def test_failed_job_page_is_still_and_offers_retry_and_clean_up(
    admin_client: Any,
) -> None:
    job = make_job(status="failed", error="ConnectError: no route to host")

    text = admin_client.get(f"{JOBS}{job.pk}/change/").text

    assert 'http-equiv="refresh"' not in text
    assert "ConnectError: no route to host" in text
    assert f"{JOBS}{job.pk}/cancel/" not in text
    assert f'action="{JOBS}{job.pk}/retry/"' in text
    assert f'href="{JOBS}{job.pk}/cleanup/"' in text
    assert "Nothing crawled yet." in text


def test_a_failed_jobs_reason_is_at_the_top_of_its_page(admin_client: Any) -> None:
    reason = (
        "StartURLRefused: http://gallery.example/ — blocked: gallery.example "
        "resolves to 10.0.0.7 is a private or loopback address"
    )
    job = make_job(status="failed", error=reason)

    text = admin_client.get(f"{JOBS}{job.pk}/change/").text

    banner = text.index('<p class="errornote">')
    assert text.index(reason, banner) < text.index("<fieldset")
    assert "This job failed" in text[banner : text.index("<fieldset")]


def test_a_succeeded_job_has_no_failure_banner(admin_client: Any) -> None:
    job = make_job(status="succeeded")

    text = admin_client.get(f"{JOBS}{job.pk}/change/").text

    assert "This job failed" not in text


def test_succeeded_job_page_offers_clean_up_but_no_retry(admin_client: Any) -> None:
    job = make_job(status="succeeded", progress_done=5, progress_total=5)

    text = admin_client.get(f"{JOBS}{job.pk}/change/").text

    assert f"{JOBS}{job.pk}/retry/" not in text
    assert f'href="{JOBS}{job.pk}/cleanup/"' in text
    assert '<progress max="100" value="100"' in text


def test_posting_the_change_page_never_overwrites_the_workers_counters(
    admin_client: Any,
) -> None:
    job = make_job(status="running", pages_fetched=1)
    admin_client.get(f"{JOBS}{job.pk}/change/")
    ScrapeJob.objects.filter(pk=job.pk).update(pages_fetched=9, stage="storing")

    admin_client.post(f"{JOBS}{job.pk}/change/", {})

    job.refresh_from_db()
    assert (job.pages_fetched, job.stage, job.status) == (9, "storing", "running")


def test_jobs_are_not_deleted_the_plain_way(admin_client: Any) -> None:
    job = make_job(status="succeeded")

    assert admin_client.get(f"{JOBS}{job.pk}/delete/").status_code == 403
    assert 'value="delete_selected"' not in admin_client.get(JOBS).text


# --- cancel -----------------------------------------------------------------------


def test_cancel_button_stops_a_running_job(admin_client: Any) -> None:
    job = make_job(status="running")

    response = admin_client.post(f"{JOBS}{job.pk}/cancel/")

    assert response["Location"] == f"{JOBS}{job.pk}/change/"
    job.refresh_from_db()
    assert (job.status, job.cancel_requested) == ("running", True)
    assert admin_client.get(f"{JOBS}{job.pk}/cancel/").status_code == 405


def test_cancel_button_on_an_ended_job_says_so(admin_client: Any) -> None:
    job = make_job(status="succeeded")

    response = admin_client.post(f"{JOBS}{job.pk}/cancel/", follow=True)

    assert "It had already ended." in messages_of(response)
    job.refresh_from_db()
    assert (job.status, job.cancel_requested) == ("succeeded", False)


def test_cancel_action(admin_client: Any) -> None:
    queued, running, done = (
        make_job(),
        make_job(status="running"),
        make_job(status="succeeded"),
    )

    admin_client.post(
        JOBS,
        {
            "action": "cancel_selected",
            "index": 0,
            "_selected_action": [queued.pk, running.pk, done.pk],
        },
    )

    for job in (queued, running, done):
        job.refresh_from_db()
    assert queued.status == BaseRun.Status.CANCELLED
    assert (running.status, running.cancel_requested) == ("running", True)
    assert (done.status, done.cancel_requested) == ("succeeded", False)


# --- retry ------------------------------------------------------------------------


def test_retry_button_queues_the_same_job_again(
    admin_client: Any, django_capture_on_commit_callbacks: Any
) -> None:
    album = make_album(name="Tarot")
    failed = make_job(
        album=album, album_name="Tarot", status="failed", max_depth=4, attempts=3
    )
    log(failed, 1)

    with django_capture_on_commit_callbacks() as enqueued:
        response = admin_client.post(f"{JOBS}{failed.pk}/retry/")

    assert response["Location"] == f"{JOBS}{failed.pk}/change/"
    failed.refresh_from_db()
    assert (failed.status, failed.attempts, failed.album) == ("queued", 0, album)
    assert len(enqueued) == 1
    assert ScrapeJob.objects.count() == 1


def test_retry_button_refuses_a_job_that_succeeded(admin_client: Any) -> None:
    job = make_job(status="succeeded")

    response = admin_client.post(f"{JOBS}{job.pk}/retry/", follow=True)

    assert (
        f"Scrape job {job.pk} is succeeded; only a failed or cancelled one can be "
        "queued again." in messages_of(response)
    )
    job.refresh_from_db()
    assert job.status == "succeeded"


def test_retry_action_retries_only_failed_and_cancelled_jobs(
    admin_client: Any,
) -> None:
    failed = make_job(status="failed", start_url="https://f.example/")
    cancelled = make_job(status="cancelled", start_url="https://c.example/")
    running = make_job(status="running", start_url="https://r.example/")

    admin_client.post(
        JOBS,
        {
            "action": "retry_selected",
            "index": 0,
            "_selected_action": [failed.pk, cancelled.pk, running.pk],
        },
    )

    states = dict(ScrapeJob.objects.values_list("start_url", "status"))
    assert states == {
        "https://f.example/": "queued",
        "https://c.example/": "queued",
        "https://r.example/": "running",
    }


# --- clean up ---------------------------------------------------------------------


def scraped_library() -> dict[str, Any]:
    """A finished job whose album holds two images of its own and one that
    another album also holds."""
    album = make_album(name="Scraped", source_kind=Album.Kind.SCRAPE)
    other = make_album(name="Favourites")
    only_here = [make_image(album=album, seed=n) for n in (1, 2)]
    shared = make_image(album=album, seed=3)
    album_add_images(album=other, images=[shared])
    job = make_job(album=album, album_name="Scraped", status="succeeded")
    log(job, 1, kind="image", outcome="saved", image=only_here[0])
    return {"job": job, "other": other, "only_here": only_here, "shared": shared}


def test_clean_up_page_says_what_goes_and_what_stays(admin_client: Any) -> None:
    lib = scraped_library()

    response = admin_client.get(f"{JOBS}{lib['job'].pk}/cleanup/")

    assert response.status_code == 200
    assert response.context["rows"] == [
        (lib["job"], {"images_deleted": 2, "images_kept": 1})
    ]
    assert "Yes, clean up" in response.text
    assert ScrapeJob.objects.exists()  # a GET changes nothing


def test_clean_up_removes_the_album_its_own_images_and_the_job(
    admin_client: Any, django_capture_on_commit_callbacks: Any
) -> None:
    lib = scraped_library()

    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(f"{JOBS}{lib['job'].pk}/cleanup/", follow=True)

    assert (
        "Cleaned up 1 job(s): deleted 2 image(s); kept 1" in (messages_of(response)[0])
    )
    assert not ScrapeJob.objects.exists()
    assert not CrawlLogEntry.objects.exists()
    assert list(Album.objects.all()) == [lib["other"]]
    assert list(Image.objects.all()) == [lib["shared"]]
    assert not any(p.exists() for im in lib["only_here"] for p in stored_paths(im))
    assert stored_paths(lib["shared"])[0].exists()


def test_clean_up_leaves_a_running_job_alone(admin_client: Any) -> None:
    album = make_album(name="Scraped")
    make_image(album=album, seed=1)
    job = make_job(album=album, status="running")

    page = admin_client.get(f"{JOBS}{job.pk}/cleanup/")
    response = admin_client.post(f"{JOBS}{job.pk}/cleanup/", follow=True)

    assert "nothing to clean up" in page.text
    assert f"Scrape job {job.pk} is running" in messages_of(response)[0]
    assert ScrapeJob.objects.filter(pk=job.pk).exists()
    assert Image.objects.count() == 1


def test_clean_up_action_confirms_then_cleans(
    admin_client: Any, django_capture_on_commit_callbacks: Any
) -> None:
    lib = scraped_library()
    empty = make_job(status="cancelled")
    running = make_job(status="running")
    selection = {
        "action": "clean_up_jobs",
        "index": 0,
        "_selected_action": [lib["job"].pk, empty.pk, running.pk],
    }

    confirm = admin_client.post(JOBS, selection)
    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post(JOBS, selection | {"apply": "yes"})

    assert confirm.status_code == 200
    assert [job.pk for job, _ in confirm.context["rows"]] == [lib["job"].pk, empty.pk]
    assert confirm.context["active"] == [running]
    assert list(ScrapeJob.objects.all()) == [running]
    assert list(Image.objects.all()) == [lib["shared"]]


# --- crawl log --------------------------------------------------------------------


def test_log_changelist_filters_and_searches(admin_client: Any) -> None:
    job = make_job()
    page = log(job, 1)
    saved = log(job, 2, kind="image", outcome="saved", url="https://x.example/a.png")
    skipped = log(job, 3, outcome="skipped", url="https://elsewhere.example/")

    assert listed(admin_client.get(LOG, {"kind__exact": "image"})) == [saved.pk]
    assert listed(admin_client.get(LOG, {"outcome__exact": "skipped"})) == [skipped.pk]
    assert listed(admin_client.get(LOG, {"q": "elsewhere"})) == [skipped.pk]
    assert listed(admin_client.get(LOG, {"job__id__exact": job.pk})) == [
        page.pk,
        saved.pk,
        skipped.pk,
    ]


def test_the_whole_log_reads_oldest_first(admin_client: Any) -> None:
    job = make_job()
    entries = [log(job, n) for n in range(5)]

    assert listed(admin_client.get(LOG, {"job__id__exact": job.pk})) == [
        e.pk for e in entries
    ]


def test_log_changelist_queries_do_not_grow_with_entries(admin_client: Any) -> None:
    image = make_image(seed=1)
    job = make_job()
    log(job, 1, image=image)
    few = query_count(admin_client, LOG)
    for n in range(20):
        log(make_job(), n, image=image)

    assert query_count(admin_client, LOG) == few


def test_the_log_is_read_only(admin_client: Any) -> None:
    entry = log(make_job(), 1, url="javascript:alert(1)", reason="not a web URL")

    assert admin_client.get(f"{LOG}add/").status_code == 403
    assert admin_client.get(f"{LOG}{entry.pk}/delete/").status_code == 403
    view = admin_client.get(f"{LOG}{entry.pk}/change/")
    assert view.status_code == 200
    assert 'name="_save"' not in view.text
    assert "not a web URL" in view.text
    assert 'href="javascript:' not in view.text
