"""The generate form in a real Chromium: tick a LoRA, move its weight slider,
click its trigger word; the base model, size and steps follow; a mix of base
models is named; the job made has the LoRA at the slider's weight."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from imagineer_project.testing.browser import staff_page
from training.models import GenerationJob, Lora
from training.tests.builders import QUIET
from training.tests.test_generate_form import sd15_lora

pytestmark = [pytest.mark.browser, QUIET]


def test_pick_a_lora_with_its_slider_and_generate(
    browser: Any,
    live_server: Any,
    transactional_db: Any,
    loras: tuple[Lora, Lora],
    gen_env: Path,
) -> None:
    blocks, _ = loras
    inked = sd15_lora()
    add = "/admin/training/generationjob/add/"
    page = staff_page(browser, live_server.url, next_path=add)
    page.fill("#id_base_model", "")
    page.fill("#id_width", "512")

    page.check(f"#id_lora_{blocks.pk}")
    assert page.input_value("#id_base_model") == gen_env.name  # the LoRA's model
    assert page.input_value("#id_width") == "64"  # that model's own size
    assert page.input_value("#id_steps") == "10"

    page.locator(f'input[data-weight-for="id_lora_{blocks.pk}_weight"]').fill("1.25")
    assert page.input_value(f"#id_lora_{blocks.pk}_weight") == "1.25"

    page.fill("#id_prompt", "a cat")
    row = page.locator(f'.lora-row[data-lora-id="{blocks.pk}"]')
    row.get_by_role("button", name="zxq").click()
    assert page.input_value("#id_prompt") == "a cat, zxq"

    mix = page.locator(".lora-picker-mix")
    assert not mix.is_visible()
    page.check(f"#id_lora_{inked.pk}")
    assert mix.is_visible() and "different base models" in mix.inner_text()
    page.uncheck(f"#id_lora_{inked.pk}")
    assert not mix.is_visible()

    page.fill("#id_steps", "2")
    page.click("input[type=submit]")
    page.wait_for_url("**/generationjob/*/change/")
    job = GenerationJob.objects.get()
    assert [(e["name"], e["weight"]) for e in job.loras] == [("blocks", 1.25)]
    assert job.base_model == str(gen_env) and job.width == 64
    assert "Generation #" in page.locator(".messagelist").inner_text()
