"""The path a new user takes, in a real Chromium, asserting what they see at
each step: the admin home → a new album → upload by drag-and-drop (two images
and a caption file) → scrape a site into the same album → label it with Claude
(the local fake) → review it in the grid with the keyboard → train a smoke-test
LoRA on it → generate with that LoRA.

Tasks run in the request here (Q_SYNC), so each step's page is the run's
page once the run has ended. With IMAGINEER_WALK_SHOTS=<folder> the test also
saves a screenshot of every step there and the seconds each step took
(walk.json), for the notes of whoever checks it by hand.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from albums.models import Album
from imagineer_project.testing import make_image_bytes, make_user
from imagineer_project.testing.browser import drop_files
from imagineer_project.testing.site import SiteHandler, serve_site
from labeling.models import Label
from training.models import GenerationJob, Lora, TrainingRun

pytestmark = pytest.mark.browser

CARDS = {
    f"/cards/{n}.png": make_image_bytes("PNG", seed=40 + n, size=(160, 240))
    for n in range(20)
}
GALLERY = "".join(
    f'<figure><img src="{path}" alt="card {n}"><figcaption>Card {n} of the '
    "deck</figcaption></figure>"
    for n, path in enumerate(CARDS)
)


class DeckSite(SiteHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        if self.path in CARDS:
            self.answer(CARDS[self.path], "image/png")
        elif self.path == "/robots.txt":
            self.answer(b"User-agent: *\nAllow: /\n", "text/plain")
        else:
            self.answer(f"<html><body>{GALLERY}</body></html>".encode(), "text/html")


class Walk:
    """Times each step and, when asked, keeps a screenshot of where it ended."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.folder = os.environ.get("IMAGINEER_WALK_SHOTS", "")
        self.times: dict[str, float] = {}
        self.mark = time.monotonic()

    def step(self, name: str) -> None:
        now = time.monotonic()
        self.times[name] = round(now - self.mark, 2)
        self.mark = now
        if self.folder:
            Path(self.folder).mkdir(parents=True, exist_ok=True)
            self.page.screenshot(path=f"{self.folder}/{len(self.times):02d}-{name}.png")

    def save(self) -> None:
        if self.folder:
            Path(self.folder, "walk.json").write_text(json.dumps(self.times, indent=1))


@pytest.fixture
def page(browser: Any, live_server: Any, transactional_db: Any) -> Any:
    tab = browser.new_page(viewport={"width": 1280, "height": 900})
    # Training and generation run inside the request (Q_SYNC).
    tab.set_default_timeout(120_000)
    return tab


def test_a_new_user_goes_from_an_empty_library_to_a_generated_image(
    page: Any,
    live_server: Any,
    settings: Any,
    fake_anthropic: Any,
    tiny_base: Any,
) -> None:
    settings.TRAINING_BASE_MODEL = str(tiny_base)
    settings.TRAINING_DEVICE = "cpu"
    settings.GENERATION_DEVICE = "cpu"
    settings.SCRAPER_MIN_DELAY = 0
    make_user(username="curator", staff=True, is_superuser=True)
    base = live_server.url
    walk = Walk(page)

    # 1. Sign in: the admin home is the workflow, in order, on an empty library.
    page.goto(f"{base}/admin/")
    page.fill("#id_username", "curator")
    page.fill("#id_password", "pw-for-tests-only")
    page.click("input[type=submit]")
    page.wait_for_url(f"{base}/admin/")
    stages = page.locator(".workflow-stage h2").all_inner_texts()
    assert [" ".join(s.split()) for s in stages] == [
        "1 Collect",
        "2 Label",
        "3 Curate",
        "4 Train",
        "5 Generate",
    ]
    assert "0 albums" in page.locator("#stage-collect").inner_text()
    walk.step("home")

    # 2. A new album: saving it lands on the album, with its way onward.
    page.goto(f"{base}/admin/albums/album/add/")
    page.fill("#id_name", "Moon tarot")
    page.fill("#id_trigger_word", "moontarot")
    page.click('input[name="_save"]')
    album = Album.objects.get(name="Moon tarot")
    page.wait_for_url(f"{base}/admin/albums/album/{album.pk}/change/")
    onward = [t.strip() for t in page.locator("a.onward-link").all_text_contents()]
    for link in ("Upload images", "Scrape into", "Label with Claude", "Review"):
        assert link in onward
    walk.step("album")

    # 3. Upload by drag-and-drop: two images and the caption of one.
    page.click("a.onward-link >> text=Upload images")
    page.wait_for_url(f"**/albums/album/{album.pk}/upload/")
    drop_files(
        page,
        "#upload-drop",
        [
            ("fool.png", make_image_bytes("PNG", seed=1), "image/png"),
            ("magician.png", make_image_bytes("PNG", seed=2), "image/png"),
            ("fool.txt", b"the fool at the cliff edge", "text/plain"),
        ],
    )
    page.locator("#upload-summary").filter(has_text="3 files chosen").wait_for()
    page.click("input[type=submit]")
    # Back on the album, with the upload's run a link away.
    page.wait_for_url(f"**/admin/albums/album/{album.pk}/change/")
    assert "2 image(s) in this album" in page.locator(".field-images_link").inner_text()
    page.click(".messagelist a >> text=follow upload")
    assert "Succeeded" in page.locator(".field-status").inner_text()
    assert album.images.count() == 2
    fool = album.images.get(original_filename="fool.png")
    assert Label.objects.get(image=fool, kind="caption").text == (
        "the fool at the cliff edge"
    )
    walk.step("upload")

    # 4. Scrape a site into the same album.
    page.goto(f"{base}/admin/albums/album/{album.pk}/change/")
    page.click("a.onward-link >> text=Scrape into")
    page.wait_for_url("**/scraping/scrapejob/add/**")
    with serve_site(DeckSite, settings) as site:
        page.fill("#id_start_url", f"{site}/gallery")
        page.select_option("#id_render", "never")
        page.fill("#id_politeness_delay", "0")
        page.click('input[type=submit][value="Start scrape"]')
        page.wait_for_url("**/scraping/scrapejob/*/change/")
    assert "Succeeded" in page.locator(".field-status").inner_text()
    assert album.images.count() == 22
    walk.step("scrape")

    # 5. Label with Claude: the estimate first, then the job's captions.
    page.goto(f"{base}/admin/albums/album/{album.pk}/change/")
    page.click("a.onward-link >> text=Label with Claude")
    page.wait_for_url(f"**/albums/album/{album.pk}/label/")
    assert "for 22 images" in page.locator("main").inner_text()
    page.click("input[type=submit]")
    page.wait_for_url("**/labeling/labelingjob/*/change/")
    assert "Succeeded" in page.locator(".field-status").inner_text()
    produced = page.locator(".labeling-results tbody tr")
    assert produced.count() == 22
    walk.step("label")

    # 6. Review in the grid with the keyboard: approve, reject one, edit one.
    page.goto(f"{base}/admin/albums/album/{album.pk}/change/")
    page.click("a.onward-link >> text=Review")
    page.wait_for_url("**/albums/image/review/**")
    cards = page.locator(".review-card")
    assert cards.count() == 22
    first = cards.nth(0).get_attribute("data-id")
    page.keyboard.press("a")
    page.wait_for_selector(f'.review-card[data-id="{first}"][data-review="approved"]')
    page.keyboard.press("j")
    second = page.locator(".review-card.is-current").get_attribute("data-id")
    page.keyboard.press("r")
    page.wait_for_selector(f'.review-card[data-id="{second}"][data-review="rejected"]')
    page.keyboard.press("j")
    third = page.locator(".review-card.is-current").get_attribute("data-id")
    page.keyboard.press("e")
    page.locator(f'.review-card[data-id="{third}"] textarea').fill(
        "moontarot, the moon over still water"
    )
    page.keyboard.press("Enter")
    page.locator(f'.review-card[data-id="{third}"] .review-caption').filter(
        has_text="the moon over still water"
    ).wait_for()
    assert album.images.filter(review_status="rejected").count() == 1
    walk.step("review")

    # 7. Train a smoke-test LoRA on the album: the estimate, then the run.
    page.goto(f"{base}/admin/albums/album/{album.pk}/change/")
    page.click("a.onward-link >> text=Train on")
    page.wait_for_url("**/training/trainingrun/add/**")
    page.check('input[name="preset"][value="smoke"]')
    page.fill("#id_name", "moon-smoke")
    page.click("input[type=submit]")
    page.wait_for_url("**/training/trainingrun/*/change/")
    run = TrainingRun.objects.get()
    assert run.status == "succeeded", run.error
    assert run.dataset.captioned_count == 21  # the rejected card stays out
    lora = Lora.objects.get(source_run=run)
    walk.step("train")

    # 8. Generate with the LoRA: base model and trigger word preset.
    page.click("a.onward-link >> text=Generate with this LoRA")
    page.wait_for_url("**/training/generationjob/add/**")
    assert page.input_value("#id_base_model") == lora.base_model
    assert page.input_value("#id_prompt").startswith("moontarot")
    page.locator("#id_prompt").press("End")
    page.keyboard.type("the moon card, silver ink")
    page.fill("#id_steps", "4")
    page.click("input[type=submit]")
    page.wait_for_url("**/training/generationjob/*/change/")
    job = GenerationJob.objects.get()
    assert job.status == "succeeded", job.error
    assert [spec["name"] for spec in job.loras] == [lora.name]
    assert job.prompt == "moontarot, the moon card, silver ink"
    assert page.locator(".field-results img").count() == job.num_images
    walk.step("generate")
    walk.save()
