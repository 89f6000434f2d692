"""The generate page, the job page, the admin, the image page's recipe, and
`manage.py generate`."""

from __future__ import annotations

from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from albums.models import Album, Image
from imagineer_project.testing import admin_listed, query_count
from training.generation.services import generation_job_create
from training.models import GenerationJob
from training.tests.builders import QUIET, run_job, small_request

pytestmark = [pytest.mark.django_db, QUIET]


FORM = {
    "prompt": "a cat",
    "negative_prompt": "",
    "loras": "",
    "insert_trigger_words": "on",
    "steps": "2",
    "guidance": "5",
    "scheduler": "ddim",
    "seed": "7",
    "width": "64",
    "height": "64",
    "num_images": "1",
    "album": "",
    "base_model": "",
}


def made_job(**overrides: Any) -> GenerationJob:
    job = generation_job_create(request=small_request(**overrides), enqueue=False)
    return run_job(job)


# --- the staff page ------------------------------------------------------------------


def test_the_generate_page_is_staff_only(client: Any, user_client: Any) -> None:
    assert client.get("/generate/").status_code == 302  # to the login
    assert user_client.get("/generate/").status_code == 302


def test_the_page_offers_the_loras_with_their_trigger_words(
    staff_client: Any, loras: tuple[Any, Any]
) -> None:
    page = staff_client.get("/generate/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "<code>blocks</code>" in html and "<code>qqv</code>" in html


def test_posting_the_form_queues_a_job_and_shows_it(
    staff_client: Any, loras: tuple[Any, Any]
) -> None:
    response = staff_client.post("/generate/", {**FORM, "loras": "blocks:0.5"})
    job = GenerationJob.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/generate/jobs/{job.pk}/"
    assert job.loras[0]["weight"] == 0.5 and job.insert_trigger_words
    run_job(job)
    page = staff_client.get(f"/generate/jobs/{job.pk}/")
    html = page.content.decode()
    assert "zxq, a cat" in html and f"/images/{job.image_ids[0]}/" in html
    assert 'http-equiv="refresh"' not in html  # ended: no refresh


def test_form_errors_name_the_field(staff_client: Any, gen_env: Path) -> None:
    response = staff_client.post("/generate/", {**FORM, "width": "100"})
    assert response.status_code == 422
    assert "A multiple of 8 from 64 to 1024 (got 100)." in response.content.decode()
    assert not GenerationJob.objects.exists()


def test_the_page_is_rate_limited_too(
    staff_client: Any, gen_env: Path, settings: Any
) -> None:
    settings.GENERATION_RATE_LIMIT = "1/minute"
    assert staff_client.post("/generate/", FORM).status_code == 302
    limited = staff_client.post("/generate/", FORM)
    assert limited.status_code == 429 and 1 <= int(limited["Retry-After"]) <= 60
    assert "Too many generation requests" in limited.content.decode()


def test_the_job_page_refreshes_while_active_and_cancels(
    staff_client: Any, gen_env: Path
) -> None:
    job = generation_job_create(request=small_request(), enqueue=False)
    assert (
        'http-equiv="refresh"'
        in staff_client.get(f"/generate/jobs/{job.pk}/").content.decode()
    )
    response = staff_client.post(f"/generate/jobs/{job.pk}/cancel/")
    assert response.status_code == 302
    job.refresh_from_db()
    assert job.status == "cancelled"


def test_a_query_string_fills_the_form(staff_client: Any, gen_env: Path) -> None:
    page = staff_client.get(
        "/generate/?prompt=zxq%2C+a+dog&seed=42&insert_trigger_words=0&loras=blocks%3A0.5"
    )
    form = page.context["form"]
    assert form.initial["prompt"] == "zxq, a dog" and form.initial["seed"] == "42"
    assert form.initial["insert_trigger_words"] is False
    assert 'name="insert_trigger_words"' in page.content.decode()
    assert "checked" not in str(form["insert_trigger_words"])


# --- the image page ------------------------------------------------------------------


def test_the_image_page_shows_the_recipe_and_generate_again(
    client: Any, staff_client: Any, loras: tuple[Any, Any], gen_env: Path, settings: Any
) -> None:
    settings.GENERATED_VISIBILITY = "public"  # visitors see it (private by default)
    job = made_job(loras=[("blocks", 0.5)])
    url = f"/images/{job.image_ids[0]}/"
    html = staff_client.get(url).content.decode()
    assert "Recipe" in html and "zxq, a cat" in html and "blocks at 0.5" in html
    assert "Generate again with this recipe" in html
    again = staff_client.get(staff_client.get(url).context["generate_again_url"])
    initial = again.context["form"].initial
    assert initial["prompt"] == "zxq, a cat" and initial["seed"] == "7"
    assert initial["loras"] == "blocks:0.5" and initial["insert_trigger_words"] is False

    client.logout()
    public = client.get(url).content.decode()
    assert "zxq, a cat" in public and "Generate again" not in public
    assert str(gen_env) not in public  # no filesystem path


def test_an_image_without_a_recipe_has_no_recipe_block(staff_client: Any) -> None:
    from albums.tests.builders import make_image

    html = staff_client.get(f"/images/{make_image().pk}/").content.decode()
    assert "Recipe" not in html


# --- admin ---------------------------------------------------------------------------


@pytest.fixture
def admin_client_(client: Any, db: Any) -> Any:
    from imagineer_project.testing import make_user

    client.force_login(make_user(username="boss", staff=True, is_superuser=True))
    return client


def test_admin_changelist_search_and_no_n_plus_one(
    admin_client_: Any, gen_env: Path
) -> None:
    prompts = ["a tabby cat", "a black dog", "a red fox"]
    jobs = [made_job(seed=s, prompt=p) for s, p in enumerate(prompts)]
    url = "/admin/training/generationjob/"
    assert admin_listed(admin_client_.get(url)) == [j.pk for j in reversed(jobs)]
    assert admin_listed(admin_client_.get(url + "?q=dog")) == [jobs[1].pk]
    few = query_count(admin_client_, url)
    more = [made_job(seed=s) for s in range(3, 6)]
    assert more and query_count(admin_client_, url) == few


def test_admin_add_is_the_generate_form(
    admin_client_: Any, loras: tuple[Any, Any]
) -> None:
    page = admin_client_.get("/admin/training/generationjob/add/")
    assert page.status_code == 200 and "<code>blocks</code>" in page.content.decode()
    response = admin_client_.post(
        "/admin/training/generationjob/add/",
        {**FORM, "loras": "blocks\ninverse:0.25", "insert_trigger_words": ""},
    )
    job = GenerationJob.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/admin/training/generationjob/{job.pk}/change/"
    assert [(e["name"], e["weight"]) for e in job.loras] == [
        ("blocks", 0.8),
        ("inverse", 0.25),
    ]
    assert not job.insert_trigger_words
    bad = admin_client_.post(
        "/admin/training/generationjob/add/", {**FORM, "loras": "nope"}
    )
    assert bad.status_code == 200 and "Unknown LoRA &#x27;nope&#x27;" in (
        bad.content.decode()
    )


def test_admin_job_page_shows_images_and_cancels(
    admin_client_: Any, gen_env: Path
) -> None:
    job = made_job(num_images=2)
    page = admin_client_.get(f"/admin/training/generationjob/{job.pk}/change/")
    html = page.content.decode()
    assert page.status_code == 200
    for pk in job.image_ids:
        assert f"/api/images/{pk}/thumbnail" in html
    assert "The same request, as a new job" in html
    queued = generation_job_create(request=small_request(), enqueue=False)
    response = admin_client_.post(f"/admin/training/generationjob/{queued.pk}/cancel/")
    assert response.status_code == 302
    queued.refresh_from_db()
    assert queued.status == "cancelled"


def test_admin_cancel_selected_action(admin_client_: Any, gen_env: Path) -> None:
    queued = generation_job_create(request=small_request(), enqueue=False)
    admin_client_.post(
        "/admin/training/generationjob/",
        {"action": "cancel_selected", "_selected_action": [queued.pk]},
    )
    queued.refresh_from_db()
    assert queued.status == "cancelled"


# --- manage.py generate --------------------------------------------------------------


def test_the_command_generates_in_the_foreground(loras: tuple[Any, Any]) -> None:
    out = StringIO()
    call_command(
        "generate",
        "--prompt=a cat",
        "--lora=blocks:0.7",
        "--lora=inverse",
        "--seed=3",
        "--album=From the CLI",
        "--width=64",
        "--height=64",
        "--steps=2",
        "--count=2",
        stdout=out,
        stderr=StringIO(),
    )
    text = out.getvalue()
    job = GenerationJob.objects.get()
    assert job.status == "succeeded" and len(job.image_ids) == 2
    assert "Prompt: zxq, qqv, blk, a cat" in text and "Seed: 3" in text
    assert f"Image {job.image_ids[1]}: /images/{job.image_ids[1]}/ (seed 4)" in text
    album = Album.objects.get(name="From the CLI")
    assert set(album.images.values_list("pk", flat=True)) == set(job.image_ids)
    assert Image.objects.get(pk=job.image_ids[0]).recipe.recipe["loras"][1] == {
        "name": "inverse",
        "weight": 0.5,
        "sha256": loras[1].sha256,
    }


def test_the_command_explains_bad_options(gen_env: Path) -> None:
    with pytest.raises(CommandError) as caught:
        call_command("generate", "--prompt=x", "--count=50", "--lora=nope:1")
    assert "--count: from 1 to 8 (got 50)" in str(caught.value)
    assert "--lora: unknown LoRA 'nope'" in str(caught.value)


def test_the_command_can_enqueue(gen_env: Path) -> None:
    out = StringIO()
    call_command("generate", "--prompt=x", "--enqueue", stdout=out)
    job = GenerationJob.objects.get()
    assert job.status == "queued"
    assert f"/generate/jobs/{job.pk}/" in out.getvalue()
