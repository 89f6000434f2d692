"""The admin home and API tokens in a real Chromium: a new user starts at the
workflow, follows an album onward into a scrape, and makes an API token that
is shown once and copied with one click."""

from __future__ import annotations

from typing import Any

import pytest

from albums.tests.builders import make_album
from imagineer_project.models import ApiToken
from imagineer_project.testing.browser import staff_page

pytestmark = pytest.mark.browser


def signed_in(browser: Any, live_server: Any) -> Any:
    clipboard = {"permissions": ["clipboard-read", "clipboard-write"]}
    return staff_page(browser, live_server.url, height=900, context=clipboard)


def test_the_home_leads_from_an_album_to_a_scrape_into_it(
    browser: Any, live_server: Any, transactional_db: Any
) -> None:
    album = make_album(name="Tarot deck")
    page = signed_in(browser, live_server)

    stages = page.locator(".workflow-stage h2")
    assert [" ".join(text.split()) for text in stages.all_inner_texts()] == [
        "1 Collect",
        "2 Label",
        "3 Curate",
        "4 Train",
        "5 Generate",
    ]
    # All five side by side at 1280 px, and nothing scrolls sideways.
    tops = {round(box["y"]) for box in (h.bounding_box() for h in stages.all())}
    assert len(tops) == 1
    width = "document.documentElement.scrollWidth <= window.innerWidth"
    assert page.evaluate(width)
    assert "1 album" in page.locator("#stage-collect").inner_text()

    page.click("#stage-collect >> text=Upload into an album")
    page.click(f"text={album.name}")
    page.click("a.onward-link >> text=Scrape into")

    assert page.input_value("#id_album_name") == "Tarot deck"
    assert page.locator("input[type=submit]").get_attribute("value") == ("Start scrape")
    assert "only the images it added" in page.locator(".preset-album-note").inner_text()


def test_an_api_token_is_shown_once_copied_and_works(
    browser: Any, live_server: Any, transactional_db: Any
) -> None:
    page = signed_in(browser, live_server)

    page.goto(f"{live_server.url}/admin/imagineer/apitoken/")
    page.click(".object-tools a.addlink")
    page.fill("#id_name", "nightly export")
    page.click("input[type=submit]")
    plain = page.input_value("#api-token")
    page.click("#copy-token")

    page.locator("#copy-done", has_text="Copied.").wait_for()
    assert page.evaluate("navigator.clipboard.readText()") == plain
    assert "it will not be shown again" in page.content()
    assert ApiToken.objects.get().name == "nightly export"
    api = page.request.get(
        f"{live_server.url}/api/health", headers={"Authorization": f"Bearer {plain}"}
    )
    assert api.status == 200
    page.goto(f"{live_server.url}/admin/imagineer/apitoken/")
    assert "nightly export" in page.content()
    assert plain not in page.content()
