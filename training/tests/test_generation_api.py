"""The generation API: POST /api/generate, /api/generation-jobs, the image
detail's recipe, and the rate limit."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from training.models import GenerationJob
from training.tests.builders import QUIET, run_job, small_payload

pytestmark = [pytest.mark.django_db, QUIET]


def post(client: Any, payload: dict[str, Any]) -> Any:
    return client.post(
        "/api/generate", json.dumps(payload), content_type="application/json"
    )


def test_generate_queues_a_job_and_points_at_it(
    call_as: Any, loras: tuple[Any, Any]
) -> None:
    blocks, _ = loras
    response = post(
        call_as("token"),
        small_payload(num_images=2, loras=[{"name": "blocks", "weight": 0.6}]),
    )
    assert response.status_code == 202, response.json()
    job = GenerationJob.objects.get()
    assert response["Location"] == f"/api/generation-jobs/{job.pk}"
    body = response.json()
    assert body["status"] == "queued" and body["images"] == []
    assert body["effective_prompt"] == "zxq, a cat"
    assert body["loras"] == [
        {
            "lora_id": blocks.pk,
            "name": "blocks",
            "weight": 0.6,
            "sha256": blocks.sha256,
            "trigger_words": ["zxq"],
        }
    ]
    assert body["album"]["name"] == "Generated" and body["seed"] == 7


def test_the_detail_lists_images_with_recipes_once_done(
    call_as: Any, gen_env: Path
) -> None:
    client = call_as("token")
    job_id = post(client, small_payload(num_images=2)).json()["id"]
    run_job(GenerationJob.objects.get(pk=job_id))

    body = client.get(f"/api/generation-jobs/{job_id}").json()
    assert body["status"] == "succeeded" and body["percent"] == 100
    assert [im["id"] for im in body["images"]] == body["image_ids"]
    first = body["images"][0]
    assert first["thumbnail_url"] == f"/api/images/{first['id']}/thumbnail"
    assert first["url"] == f"/images/{first['id']}/"
    assert first["recipe"]["seed"] == 7 and body["images"][1]["recipe"]["seed"] == 8


def test_invalid_requests_are_422_naming_each_field(
    call_as: Any, loras: tuple[Any, Any]
) -> None:
    response = post(
        call_as("token"),
        small_payload(
            width=100, steps=500, loras=[{"name": "nope"}], scheduler="magic"
        ),
    )
    assert response.status_code == 422
    body = response.json()
    assert body["error_code"] == "generation_invalid"
    errors = body["details"]["errors"]
    assert set(errors) == {"width", "steps", "loras", "scheduler"}
    assert errors["width"] == "a multiple of 8 from 64 to 1024 (got 100)"
    assert errors["loras"].startswith("unknown LoRA 'nope' (registered: ")
    assert "width: a multiple of 8" in body["error"]
    assert not GenerationJob.objects.exists()


def test_a_wrong_type_is_the_usual_422(call_as: Any, gen_env: Path) -> None:
    response = post(call_as("token"), small_payload(steps="many"))
    assert response.status_code == 422
    assert response.json()["error"] == "The request is not valid."


def test_staff_only(call_as: Any, gen_env: Path) -> None:
    assert post(call_as("anon"), small_payload()).status_code == 401
    assert post(call_as("user"), small_payload()).status_code == 403
    assert call_as("user").get("/api/generation-jobs").status_code == 403


def test_the_rate_limit_is_429_with_retry_after(
    call_as: Any, gen_env: Path, settings: Any
) -> None:
    settings.GENERATION_RATE_LIMIT = "2/hour"
    settings.GENERATION_RATE_LIMIT_EXEMPT_STAFF = False
    client = call_as("token")
    assert post(client, small_payload()).status_code == 202
    # An invalid request is not counted.
    assert post(client, small_payload(steps=0)).status_code == 422
    assert post(client, small_payload()).status_code == 202
    limited = post(client, small_payload())
    assert limited.status_code == 429
    # A fixed window (django-ratelimit's): it ends within the hour.
    assert 1 <= int(limited["Retry-After"]) <= 3600
    body = limited.json()
    assert body["error_code"] == "rate_limited"
    assert body["details"] == {
        "limit": "generate",
        "retry_after": int(limited["Retry-After"]),
    }
    assert GenerationJob.objects.count() == 2


def test_the_rate_limit_counts_images(
    call_as: Any, gen_env: Path, settings: Any
) -> None:
    settings.GENERATION_RATE_LIMIT = "3/hour"
    client = call_as("token")
    assert post(client, small_payload(num_images=2)).status_code == 202
    assert post(client, small_payload(num_images=2)).status_code == 429
    assert post(client, small_payload(num_images=1)).status_code == 202
    # More than the whole window allows: waiting would not help, so 422.
    too_many = post(client, small_payload(num_images=4))
    assert too_many.status_code == 422
    assert too_many.json()["details"]["errors"] == {
        "num_images": "4 images are more than the 'generate' rate limit allows "
        "at once (3 per 3600s); ask for fewer, or ask an operator to raise the "
        "limit"
    }


def test_staff_can_be_exempt_by_setting(
    call_as: Any, gen_env: Path, settings: Any
) -> None:
    settings.GENERATION_RATE_LIMIT = "1/hour"
    settings.GENERATION_RATE_LIMIT_EXEMPT_STAFF = True
    client = call_as("token")
    assert [post(client, small_payload()).status_code for _ in range(3)] == [202] * 3


def test_list_filters_by_status_and_pages(call_as: Any, gen_env: Path) -> None:
    client = call_as("token")
    ids = [post(client, small_payload()).json()["id"] for _ in range(3)]
    client.post(f"/api/generation-jobs/{ids[0]}/cancel")
    page = client.get("/api/generation-jobs?limit=2").json()
    assert [j["id"] for j in page["items"]] == ids[:0:-1]
    rest = client.get(f"/api/generation-jobs?limit=2&cursor={page['next_cursor']}")
    assert [j["id"] for j in rest.json()["items"]] == [ids[0]]
    cancelled = client.get("/api/generation-jobs?status=cancelled").json()
    assert [j["id"] for j in cancelled["items"]] == [ids[0]]


def test_cancel_then_409_once_ended(call_as: Any, gen_env: Path) -> None:
    client = call_as("token")
    job_id = post(client, small_payload()).json()["id"]
    response = client.post(f"/api/generation-jobs/{job_id}/cancel")
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    again = client.post(f"/api/generation-jobs/{job_id}/cancel")
    assert again.status_code == 409
    assert again.json()["error"] == (
        f"Generation job {job_id} already ended (cancelled)."
    )
    assert client.get("/api/generation-jobs/999999").status_code == 404


def test_the_image_detail_shows_the_recipe(
    call_as: Any, gen_env: Path, settings: Any
) -> None:
    settings.GENERATED_VISIBILITY = "public"  # visitors see it (private by default)
    job_id = post(call_as("token"), small_payload()).json()["id"]
    job = run_job(GenerationJob.objects.get(pk=job_id))
    image_id = job.image_ids[0]
    staff = call_as("token").get(f"/api/images/{image_id}").json()
    assert staff["recipe"]["seed"] == 7
    # No filesystem path, staff included: the configured model by its name.
    assert staff["recipe"]["base_model"] == gen_env.name
    # Visitors see the recipe without the worker's filesystem path.
    public = call_as("anon").get(f"/api/images/{image_id}").json()
    assert public["recipe"]["base_model"] == gen_env.name
    assert {k: v for k, v in public["recipe"].items() if k != "base_model"} == {
        k: v for k, v in staff["recipe"].items() if k != "base_model"
    }
    # What staff saw can be sent back: the name stands for the configured folder.
    again = post(call_as("token"), {**small_payload(), "base_model": gen_env.name})
    assert again.json()["base_model"] == gen_env.name
    assert GenerationJob.objects.get(pk=again.json()["id"]).base_model == str(gen_env)


def test_an_image_without_a_recipe_says_null(call_as: Any, db: Any) -> None:
    from albums.tests.builders import make_image

    image = make_image()
    assert call_as("anon").get(f"/api/images/{image.pk}").json()["recipe"] is None
