"""The generate form: LoRAs picked from a list with weights, the base model
following them, size and steps from the base model, and the query parameters
other pages link with (lora, album, from_image, base_model)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from albums.tests.builders import make_album
from training.generation.services import base_model_defaults, generation_job_create
from training.models import GenerationJob, Lora
from training.tests.builders import QUIET, run_job, small_request
from training.tests.test_generation_pages import FORM

pytestmark = [pytest.mark.django_db, QUIET]

ADD = "/admin/training/generationjob/add/"
SD15 = "stable-diffusion-v1-5/stable-diffusion-v1-5"


def sd15_lora() -> Lora:
    """A LoRA registered for another base model (the form never loads it)."""
    return Lora.objects.create(
        name="inked", file="loras/inked.safetensors", trigger_words=["ink"],
        base_model=SD15,
    )  # fmt: skip


def test_size_and_steps_come_from_the_base_models_files(gen_env: Path) -> None:
    assert base_model_defaults(str(gen_env)) == {"width": 64, "height": 64, "steps": 10}
    # Neither a local folder nor in the hub cache: SD 1.5's own.
    assert base_model_defaults(SD15) == {"width": 512, "height": 512, "steps": 25}


def test_the_form_lists_the_loras_with_weights_and_trigger_words(
    admin_client: Any, loras: tuple[Lora, Lora]
) -> None:
    page = admin_client.get(ADD)
    html = page.text
    blocks, inverse = loras
    assert f'name="lora_{blocks.pk}"' in html
    assert f'name="lora_{inverse.pk}_weight" value="0.5"' in html
    assert (
        'type="range"' in html
        and f'data-weight-for="id_lora_{inverse.pk}_weight"' in html
    )
    assert 'data-word="qqv"' in html and 'data-word="blk"' in html
    form = page.context["form"]
    # The default base model is the tiny one: its size and steps.
    assert (form["width"].value(), form["steps"].value()) == (64, 10)


def test_picked_loras_with_their_weights_make_the_job(
    admin_client: Any, loras: tuple[Lora, Lora], gen_env: Path
) -> None:
    blocks, inverse = loras
    data = {**FORM, f"lora_{blocks.pk}": "on", f"lora_{blocks.pk}_weight": "0.3"}
    data[f"lora_{inverse.pk}_weight"] = "0.9"  # not ticked: not used
    response = admin_client.post(ADD, data)
    job = GenerationJob.objects.get()
    assert response.status_code == 302
    assert [(e["name"], e["weight"]) for e in job.loras] == [("blocks", 0.3)]
    assert job.base_model == str(gen_env)  # the folder its name stands for


def test_the_text_path_still_works_beside_the_list(
    admin_client: Any, loras: tuple[Lora, Lora]
) -> None:
    blocks, _ = loras
    data = {**FORM, f"lora_{blocks.pk}": "on", "loras": "inverse:0.25"}
    admin_client.post(ADD, data)
    job = GenerationJob.objects.get()
    assert [(e["name"], e["weight"]) for e in job.loras] == [
        ("blocks", 0.8),
        ("inverse", 0.25),
    ]


def test_a_mix_of_base_models_is_refused_with_both_named(
    admin_client: Any, loras: tuple[Lora, Lora]
) -> None:
    blocks, _ = loras
    inked = sd15_lora()
    data = {**FORM, f"lora_{blocks.pk}": "on", f"lora_{inked.pk}": "on"}
    response = admin_client.post(ADD, data)
    assert response.status_code == 200
    (error,) = response.context["form"].errors["loras"]
    assert error.startswith("The picked LoRAs were made for different base models (")
    assert "inked on stable-diffusion-v1-5/stable-diffusion-v1-5" in error
    assert error.endswith("Pick LoRAs of one base model.")
    assert not GenerationJob.objects.exists()


def test_a_lora_link_presets_its_base_model_and_trigger_words(
    admin_client: Any, gen_env: Path
) -> None:
    inked = sd15_lora()
    form = admin_client.get(f"{ADD}?lora={inked.pk}").context["form"]
    assert form[f"lora_{inked.pk}"].value() is True
    assert form["base_model"].value() == SD15
    assert form["prompt"].value() == "ink, "
    assert (form["width"].value(), form["steps"].value()) == (512, 25)


def test_an_album_link_generates_into_that_album(
    admin_client: Any, gen_env: Path
) -> None:
    album = make_album(name="Moodboard")
    form = admin_client.get(f"{ADD}?album={album.pk}").context["form"]
    assert form["album"].value() == "Moodboard"


def test_a_base_model_link_sets_it(staff_client: Any, gen_env: Path) -> None:
    form = staff_client.get(f"/generate/?base_model={SD15}").context["form"]
    assert (form["base_model"].value(), form["width"].value()) == (SD15, 512)


def test_generate_again_fills_every_field_with_a_new_seed(
    admin_client: Any, loras: tuple[Lora, Lora]
) -> None:
    blocks, _ = loras
    request = small_request(loras=[("blocks", 0.4)], seed=99)
    job = run_job(generation_job_create(request=request, enqueue=False))
    page = admin_client.get(f"{ADD}?from_image={job.image_ids[0]}")
    form = page.context["form"]
    assert form["prompt"].value() == "zxq, a cat"
    assert form[f"lora_{blocks.pk}"].value() is True
    assert form[f"lora_{blocks.pk}_weight"].value() == 0.4
    assert (form["steps"].value(), form["width"].value()) == (2, 64)
    assert form["seed"].value() is None
    assert "with a new seed (it was 99;" in page.text
