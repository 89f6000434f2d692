"""The album's "Label with Claude" page in a real Chromium: the estimate shown
follows the form's re-label and style choices."""

from __future__ import annotations

from typing import Any

import pytest

from imagineer_project.testing.browser import staff_page
from labeling.tests.test_label_form_estimate import album_of, claude_caption

pytestmark = pytest.mark.browser


def test_the_estimate_follows_the_re_label_and_style_choices(
    browser: Any, live_server: Any, transactional_db: Any, settings: Any
) -> None:
    settings.ANTHROPIC_API_KEY = "sk-ant-test-key"  # configured; nothing is sent
    album = album_of(3)
    claude_caption(album.images.first())
    label = f"/admin/albums/album/{album.pk}/label/"
    page = staff_page(browser, live_server.url, next_path=label, timeout_ms=10000)

    shown = page.locator("[data-estimate]:visible")
    assert shown.count() == 1
    assert "for 2 images" in shown.inner_text()
    assert "1 already labeled are skipped" in shown.inner_text()
    page.check('input[name="force"]')
    assert "for 3 images" in shown.inner_text()
    page.uncheck('input[name="force"]')
    page.select_option('select[name="style"]', "description")
    assert "for 3 images" in shown.inner_text()  # no description yet
