"""What scraping adds to the admin home (Collect) and to an album's page
(imagineer_project.workflow). Registered from ScrapingConfig.ready()."""

from __future__ import annotations

from django.http import HttpRequest

from albums.models import Album
from imagineer_project.workflow import (
    Count,
    admin_url,
    register_counts,
    register_link,
    register_onward,
)
from scraping.models import ScrapeJob


def collect_counts() -> list[Count]:
    jobs = ScrapeJob.objects.count()
    return [
        Count(
            "scrape jobs",
            jobs,
            admin_url("admin:scraping_scrapejob_changelist"),
            "scrape job",
        )
    ]


def album_scrape(request: HttpRequest, album: Album) -> list[tuple[str, str]]:
    if not request.user.has_perm("scraping.add_scrapejob"):
        return []
    url = admin_url("admin:scraping_scrapejob_add", query=f"album={album.pk}")
    return [("Scrape into", url)]


def register() -> None:
    register_counts(
        "collect", collect_counts, permission="scraping.view_scrapejob", order=20
    )
    register_link(
        "collect",
        "New scrape",
        "admin:scraping_scrapejob_add",
        permission="scraping.add_scrapejob",
        order=20,
    )
    register_onward("albums.Album", album_scrape, order=20)
