"""Generated images are remembered by perceptual hash: the scraper warns when it
meets one again on the web."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from PIL import Image as PILImage

from albums.models import SourceKind
from albums.tests.builders import make_image
from imagineer_project.testing import make_image_bytes
from scraping.models import CrawlLogEntry
from scraping.services import scrape_job_create
from scraping.tasks import run_scrape_job
from training.management.commands.demo import serve_folder

pytestmark = pytest.mark.django_db


def test_the_scraper_warns_about_a_copy_of_a_generated_image(
    settings: Any, tmp_path: Path, caplog: Any
) -> None:
    settings.SCRAPER_ALLOW_PRIVATE_ADDRESSES = True
    generated = make_image(
        seed=11, fmt="PNG", size=(160, 160), source_kind=SourceKind.GENERATED
    )
    # Someone posted it as a JPEG: other bytes, the same picture.
    with generated.file.open("rb") as fh, PILImage.open(fh) as picture:
        buffer = io.BytesIO()
        picture.convert("RGB").save(buffer, "JPEG", quality=85)
    (tmp_path / "copy.jpg").write_bytes(buffer.getvalue())
    (tmp_path / "other.png").write_bytes(make_image_bytes("PNG", (160, 160), seed=12))
    (tmp_path / "index.html").write_text(
        '<html><body><img src="/copy.jpg" alt="a copy">'
        '<img src="/other.png" alt="another"></body></html>'
    )
    with serve_folder(tmp_path) as url:
        job = scrape_job_create(
            url=url,
            album_name="Web",
            enqueue=False,
            politeness_delay=0,
            render="never",
            min_width=32,
            min_height=32,
            respect_robots=False,
        )
        run_scrape_job(job.pk)

    reasons = {
        e.url.rsplit("/", 1)[-1]: e.reason
        for e in job.log.filter(kind=CrawlLogEntry.Kind.IMAGE)
    }
    assert f"WARNING: looks like generated image #{generated.pk}" in reasons["copy.jpg"]
    assert "WARNING" not in reasons["other.png"]
    assert reasons["copy.jpg"].startswith(
        f"Near duplicate of image #{generated.pk} (0 bits apart)"
    )
    assert "looks like generated image" in caplog.text
