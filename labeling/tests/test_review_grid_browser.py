"""The review grid in a real Chromium, driven by the keyboard as a reviewer
would: J/K, A, R, N, E + Enter, X, click and Shift+click, a bulk approve, the
help, an error that loses nothing, and J/K across pages."""

from __future__ import annotations

from typing import Any

import pytest

from albums.models import Image
from albums.tests.builders import make_album, make_image
from imagineer_project.testing.browser import staff_page
from labeling.models import Label
from labeling.selectors import training_caption
from labeling.services import label_create

pytestmark = pytest.mark.browser


@pytest.fixture
def page(browser: Any, live_server: Any, transactional_db: Any) -> Any:
    """A signed-in staff user's 1280×800 page on the admin home."""
    return staff_page(browser, live_server.url)


def card(page: Any, image: Image) -> Any:
    return page.locator(f'.review-card[data-id="{image.pk}"]')


def current(page: Any) -> int:
    return int(page.locator(".review-card.is-current").get_attribute("data-id"))


def state(image: Image) -> tuple[str, bool]:
    image.refresh_from_db()
    return image.review_status, image.is_nsfw


def make_captioned_album(count: int) -> tuple[Any, list[Image]]:
    album = make_album(name="Tarot")
    images = []
    for seed in range(count):
        image = make_image(album=album, seed=seed, size=(48 + 16 * seed, 64))
        label_create(image=image, kind="caption", text=f"card {seed}", source="claude")
        label_create(image=image, kind="tag", text=f"suit {seed}", source="claude")
        images.append(image)
    return album, images[::-1]  # as the grid lists them: newest first


def test_keyboard_review_of_an_album(page: Any, live_server: Any) -> None:
    album, shown = make_captioned_album(4)
    page.goto(f"{live_server.url}/admin/albums/image/review/?album={album.pk}")
    assert page.locator(".review-card").count() == 4
    assert current(page) == shown[0].pk
    assert "suit 3" in card(page, shown[0]).inner_text()

    page.keyboard.press("j")
    assert current(page) == shown[1].pk
    page.keyboard.press("a")
    page.wait_for_selector(
        f'.review-card[data-id="{shown[1].pk}"][data-review="approved"]'
    )
    assert card(page, shown[1]).locator(".review-state").inner_text() == "Approved"
    assert state(shown[1]) == ("approved", False)
    assert Label.objects.get(image=shown[1], kind="caption").review == "approved"

    page.keyboard.press("j")
    page.keyboard.press("r")
    page.wait_for_selector(
        f'.review-card[data-id="{shown[2].pk}"][data-review="rejected"]'
    )
    page.keyboard.press("n")
    page.wait_for_selector(f'.review-card[data-id="{shown[2].pk}"][data-nsfw="true"]')
    assert card(page, shown[2]).locator(".review-nsfw").is_visible()
    assert state(shown[2]) == ("rejected", True)
    page.keyboard.press("u")
    page.wait_for_selector(
        f'.review-card[data-id="{shown[2].pk}"][data-review="unreviewed"]'
    )
    page.keyboard.press("r")
    page.wait_for_selector(
        f'.review-card[data-id="{shown[2].pk}"][data-review="rejected"]'
    )

    page.keyboard.press("k")
    page.keyboard.press("e")
    editor = card(page, shown[1]).locator("textarea")
    assert editor.is_visible()
    editor.fill("the burning tower")
    page.keyboard.press("Enter")
    caption = card(page, shown[1]).locator(".review-caption")
    caption.filter(has_text="the burning tower").wait_for()
    assert not editor.is_visible()
    label = Label.objects.get(pk=training_caption(shown[1]).label_id)
    assert (label.text, label.source, label.review) == (
        "the burning tower",
        "human",
        "approved",
    )

    # Click selects, Shift+click selects the range, X unselects the current card.
    card(page, shown[0]).locator(".review-caption").click()
    card(page, shown[3]).locator(".review-caption").click(modifiers=["Shift"])
    page.keyboard.press("x")
    assert page.locator("#review-selected-count").inner_text() == "3"
    page.click('button[data-bulk="approve"]')
    page.wait_for_selector(
        f'.review-card[data-id="{shown[2].pk}"][data-review="approved"]'
    )
    assert [state(im)[0] for im in shown] == [
        "approved",
        "approved",
        "approved",
        "unreviewed",
    ]
    assert card(page, shown[0]).get_attribute("data-review") == "approved"

    page.keyboard.press("?")
    assert page.locator("#review-help").is_visible()
    assert "Toggle NSFW" in page.locator("#review-help").inner_text()


def test_an_error_is_shown_and_the_typed_caption_kept(
    page: Any, live_server: Any
) -> None:
    album, shown = make_captioned_album(2)
    page.goto(f"{live_server.url}/admin/albums/image/review/?album={album.pk}")
    Image.objects.filter(pk=shown[0].pk).delete()  # gone, as if from another tab

    page.keyboard.press("e")
    card(page, shown[0]).locator("textarea").fill("a caption worth keeping")
    page.keyboard.press("Enter")

    status = page.locator("#review-status.is-error")
    status.wait_for()
    assert "no longer exist" in status.inner_text()
    assert card(page, shown[0]).locator("textarea").input_value() == (
        "a caption worth keeping"
    )
    assert "has-error" in card(page, shown[0]).get_attribute("class")


def test_j_and_k_continue_across_pages(
    page: Any, live_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("labeling.review.views.PER_PAGE", 3)
    album, shown = make_captioned_album(4)
    page.goto(f"{live_server.url}/admin/albums/image/review/?album={album.pk}")
    for _ in range(3):
        page.keyboard.press("j")
    page.wait_for_url("**p=2")
    assert current(page) == shown[3].pk

    page.keyboard.press("k")
    page.wait_for_url("**p=1#last")
    assert current(page) == shown[2].pk
