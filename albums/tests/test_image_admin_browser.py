"""The image changelist and page in a real Chromium at 1280×800: nothing scrolls
sideways, and previous / next walk the album."""

from __future__ import annotations

from typing import Any

import pytest

from albums.tests.builders import make_album, make_image
from imagineer_project.testing.browser import staff_page
from labeling.services import label_create

pytestmark = pytest.mark.browser

SCROLL_WIDTH = "document.documentElement.scrollWidth"


@pytest.fixture
def page(browser: Any, live_server: Any, transactional_db: Any) -> Any:
    """A signed-in staff user's 1280×800 page."""
    return staff_page(browser, live_server.url)


def test_changelist_and_image_page_fit_1280_pixels(page: Any, live_server: Any) -> None:
    album = make_album(name="A rather long album name for the filter sidebar")
    images = []
    for seed, size in enumerate([(60, 120), (120, 60), (2000, 40)]):
        image = make_image(
            album=album,
            seed=seed,
            size=size,
            source_url=f"https://example.org/{'very-long-path-' * 8}{seed}.jpg",
            is_nsfw=seed == 0,
        )
        label_create(
            image=image,
            kind="caption",
            text="a long caption that goes on " * 12,
            source="claude",
        )
        label_create(image=image, kind="tag", text="tag", source="claude")
        images.append(image)

    page.goto(f"{live_server.url}/admin/albums/image/?album={album.pk}")
    assert page.locator("#result_list tbody tr").count() == 3
    assert page.evaluate(SCROLL_WIDTH) <= 1280
    # Nor does the table scroll inside its own box (Django's .results scrolls).
    results = page.locator("#changelist .results")
    assert results.evaluate("el => el.scrollWidth <= el.clientWidth")
    assert page.locator("#result_list th.column-review").is_visible()
    nsfw = page.locator(f'tr:has(input[value="{images[0].pk}"]) .imagineer-nsfw')
    assert nsfw.inner_text() == "NSFW"
    assert "rgb(230, 81, 0)" in nsfw.evaluate("el => getComputedStyle(el).background")
    # Each thumbnail keeps its image's shape.
    thumbnail = page.locator(f'tr:has(input[value="{images[0].pk}"]) img')
    assert thumbnail.evaluate("el => [el.width, el.height]") == [32, 64]

    page.click(f'tr:has(input[value="{images[1].pk}"]) th a')
    assert page.evaluate(SCROLL_WIDTH) <= 1280
    preview = page.locator(".field-preview img").bounding_box()
    caption = page.locator("#id_caption").bounding_box()
    assert preview["width"] <= 360 and preview["x"] > caption["x"] + caption["width"]
    assert page.locator("#id_review_status").is_visible()

    # Opened from the album's list: previous and next within it, newest first.
    page.click("a.imagineer-next")
    assert page.locator("#id_caption").input_value().startswith("a long caption")
    assert f"/admin/albums/image/{images[0].pk}/change/" in page.url
    assert page.locator("a.imagineer-next").count() == 0
    page.click("a.imagineer-previous")
    assert f"/admin/albums/image/{images[1].pk}/change/" in page.url
