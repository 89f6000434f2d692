"""Cancel on a run's admin page, in a real Chromium: it asks first, "no" leaves
the run alone, "yes" (even after the page's 3 s refresh was due) asks the run
to stop and the page then says "Cancelling…"."""

from __future__ import annotations

import time
from typing import Any

import pytest

from albums.models import UploadRun
from imagineer_project.testing.browser import staff_page

pytestmark = pytest.mark.browser


def test_cancel_asks_and_only_yes_stops_the_run(
    browser: Any,
    live_server: Any,
    transactional_db: Any,
) -> None:
    run = UploadRun.objects.create(status="running", message="2/13: a.jpg")
    run_page = f"/admin/albums/uploadrun/{run.pk}/change/"
    page = staff_page(browser, live_server.url, next_path=run_page, timeout_ms=10000)

    asked: list[str] = []

    def say_no(dialog: Any) -> None:
        asked.append(dialog.message)
        dialog.dismiss()

    page.once("dialog", say_no)
    page.click("text=Cancel run")
    assert asked == [
        f"Cancel upload run #{run.pk}? It stops at its next step; "
        "what it has made so far stays."
    ]
    run.refresh_from_db()
    assert not run.cancel_requested

    def think_then_yes(dialog: Any) -> None:
        time.sleep(4)  # the page's refresh (3 s) falls due while it asks
        dialog.accept()

    page.once("dialog", think_then_yes)
    page.click("text=Cancel run")
    page.wait_for_selector("text=Cancelling…")
    run.refresh_from_db()
    assert (run.status, run.cancel_requested) == ("running", True)
    assert page.locator("text=Cancel run").count() == 0
