"""The triage loop in a real Chromium: mark an image NSFW in the admin, then check
that anonymous visitors no longer see it and staff see it blurred."""

from __future__ import annotations

from typing import Any

import pytest

from albums.models import Image
from albums.tests.builders import make_album, make_image
from imagineer_project.testing import make_user

pytestmark = pytest.mark.browser


def tile(page: Any, image: Image) -> Any:
    return page.locator(f'.tile[data-image-id="{image.pk}"]')


def test_marking_nsfw_in_the_admin_hides_the_image_from_visitors(
    browser: Any, live_server: Any, transactional_db: Any
) -> None:
    make_user(username="curator", staff=True, is_superuser=True)
    album = make_album(name="Tarot deck")
    target, *others = [make_image(album=album, seed=s) for s in range(3)]
    album_url = f"{live_server.url}/albums/{album.slug}/"

    staff = browser.new_context()
    page = staff.new_page()
    page.set_default_timeout(5000)
    page.goto(f"{live_server.url}/admin/")
    page.fill("#id_username", "curator")
    page.fill("#id_password", "pw-for-tests-only")
    page.click("input[type=submit]")
    page.wait_for_url(f"{live_server.url}/admin/")

    page.goto(f"{live_server.url}/admin/albums/image/")
    page.check(f'input[name="_selected_action"][value="{target.pk}"]')
    page.select_option('select[name="action"]', "mark_nsfw")
    page.click('button[name="index"]')
    assert (
        "1 image(s) marked NSFW." in page.locator(".messagelist .success").inner_text()
    )
    assert Image.objects.get(pk=target.pk).is_nsfw

    anonymous = browser.new_context()
    visitor = anonymous.new_page()
    visitor.goto(album_url)
    assert tile(visitor, target).count() == 0
    assert all(tile(visitor, im).count() == 1 for im in others)
    anonymous.close()

    # Staff still see it, blurred until they reveal NSFW (remembered on reload).
    page.goto(album_url)
    blurred = tile(page, target)
    assert "nsfw-blur" in blurred.get_attribute("class")
    image_filter = "el => getComputedStyle(el.querySelector('img')).filter"
    assert "blur" in blurred.evaluate(image_filter)
    page.click("#nsfw-toggle")
    assert blurred.evaluate(image_filter) == "none"
    page.reload()
    assert tile(page, target).evaluate(image_filter) == "none"
    assert page.get_attribute("#nsfw-toggle", "aria-pressed") == "true"
    staff.close()
