"""The training form in a real Chromium: a preset fills the config fields and
the estimate under the form follows them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from imagineer_project.testing.browser import staff_page
from training.tests.builders import make_training_album
from training.tests.test_admin_presets import measured

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("train_env")]


def test_a_preset_fills_the_fields_and_the_estimate_follows(
    browser: Any,
    live_server: Any,
    transactional_db: Any,
    train_env: Path,
) -> None:
    measured(train_env)
    album = make_training_album(3)
    add = f"/admin/training/trainingrun/add/?album={album.pk}"
    page = staff_page(browser, live_server.url, next_path=add)
    assert page.is_checked(f'input[name="albums"][value="{album.pk}"]')
    estimate = page.locator("#train-estimate strong")
    page.wait_for_function(
        "document.querySelector('#train-estimate strong').textContent !== ''"
    )
    assert estimate.inner_text() == "about 53 h 20 min"  # Standard, from 0.5 s/step

    page.check('input[name="preset"][value="smoke"]')
    assert page.input_value("#id_steps") == "20"
    assert page.input_value("#id_resolution") == "64"
    page.wait_for_function(
        "document.querySelector('#train-estimate strong').textContent === 'about 15 s'"
    )
    page.fill("#id_steps", "200")
    page.dispatch_event("#id_steps", "change")
    page.wait_for_function(
        "document.querySelector('#train-estimate strong').textContent === 'about 2 min'"
    )
