"""The album's "Label with Claude" page in a real Chromium: the estimate shown
follows the form's re-label and style choices."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from imagineer_project.lib.chromium import CHROMIUM_ARGS
from imagineer_project.testing import make_user, require_chromium
from labeling.tests.test_label_form_estimate import album_of, claude_caption

pytestmark = pytest.mark.browser


@pytest.fixture
def browser(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    # Playwright's sync API runs an event loop in this thread; Django would
    # otherwise refuse ORM calls made from the test body while it is running.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    executable = require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()


def test_the_estimate_follows_the_re_label_and_style_choices(
    browser: Any, live_server: Any, transactional_db: Any, settings: Any
) -> None:
    settings.ANTHROPIC_API_KEY = "sk-ant-test-key"  # configured; nothing is sent
    make_user(username="curator", staff=True, is_superuser=True)
    album = album_of(3)
    claude_caption(album.images.first())
    page = browser.new_context().new_page()
    page.set_default_timeout(10000)
    page.goto(f"{live_server.url}/admin/login/")
    page.fill("#id_username", "curator")
    page.fill("#id_password", "pw-for-tests-only")
    page.click("input[type=submit]")
    page.goto(f"{live_server.url}/admin/albums/album/{album.pk}/label/")

    shown = page.locator("[data-estimate]:visible")
    assert shown.count() == 1
    assert "for 2 images" in shown.inner_text()
    assert "1 already labeled are skipped" in shown.inner_text()
    page.check('input[name="force"]')
    assert "for 3 images" in shown.inner_text()
    page.uncheck('input[name="force"]')
    page.select_option('select[name="style"]', "description")
    assert "for 3 images" in shown.inner_text()  # no description yet
