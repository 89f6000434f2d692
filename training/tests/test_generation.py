"""Generation jobs end to end on the tiny pipeline: validation, the run body,
recipes, reproducibility, LoRA stacks, cancel and double delivery."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from albums.dedup import generated_lookalikes, generated_phash_index
from albums.models import Album, AlbumImage, Image, SourceKind
from albums.tests.builders import make_album, make_image
from imagineer_project.runs import run_request_cancel
from imagineer_project.testing import make_user
from training.generation import runs as generation_runs
from training.generation.runs import generation_job_execute, local_lora_path
from training.generation.selectors import generation_job_images, recipe_form_query
from training.generation.services import (
    SEED_MAX,
    GenerationInvalid,
    effective_prompt,
    generation_job_create,
    parse_lora_lines,
    prompt_with_trigger_words,
    same_base_model,
)
from training.models import GenerationJob, ImageRecipe
from training.tests.builders import QUIET, run_job, small_request

pytestmark = [pytest.mark.django_db, QUIET]


def create(**overrides: Any) -> GenerationJob:
    return generation_job_create(request=small_request(**overrides), enqueue=False)


def test_a_job_stores_each_image_in_the_album_with_its_recipe(
    loras: tuple[Any, Any],
) -> None:
    blocks, _ = loras
    job = run_job(create(num_images=3, album="Cats", loras=[("blocks", 0.7)]))

    assert job.status == "succeeded", job.error
    # Progress counts denoising steps: 3 images of 2 steps.
    assert (job.progress_done, job.progress_total) == (6, 6)
    images = generation_job_images(job)
    assert [im.pk for im in images] == job.image_ids and len(set(job.image_ids)) == 3
    album = Album.objects.get(name="Cats")
    assert album.source_kind == Album.Kind.GENERATED and job.album == album
    assert (
        list(
            AlbumImage.objects.filter(album=album)
            .order_by("position")
            .values_list("image_id", flat=True)
        )
        == job.image_ids
    )
    assert {im.source_kind for im in images} == {SourceKind.GENERATED}
    assert {(im.width, im.height, im.format) for im in images} == {(64, 64, "PNG")}
    recipe = images[1].recipe.recipe
    duration = recipe.pop("duration_seconds")
    assert duration > 0
    assert recipe == {
        "prompt": "zxq, a cat",
        "negative_prompt": "",
        "base_model": job.base_model,
        "loras": [{"name": "blocks", "weight": 0.7, "sha256": blocks.sha256}],
        "seed": 8,
        "steps": 2,
        "guidance": 5.0,
        "scheduler": "ddim",
        "width": 64,
        "height": 64,
        "device": "cpu",
        "job_id": job.pk,
        "index": 1,
    }
    assert images[1].recipe.job == job


def test_the_default_album_and_a_drawn_seed(gen_env: Path, settings: Any) -> None:
    settings.GENERATION_DEFAULT_ALBUM = "Loose generations"
    job = create(seed=None)
    assert job.album.name == "Loose generations"
    assert job.album.source_kind == Album.Kind.GENERATED
    assert 0 <= job.seed <= SEED_MAX
    # The same default album again, not a second one.
    assert create(seed=None).album == job.album


def test_the_same_seed_makes_the_same_image_once(gen_env: Path) -> None:
    first = run_job(create(album="First"))
    again = run_job(create(album="Second"))

    assert again.status == "succeeded", again.error
    assert again.image_ids == first.image_ids  # same bytes, same Image
    image = Image.objects.get(pk=first.image_ids[0])
    assert sorted(a.name for a in image.albums.all()) == ["First", "Second"]
    # The first recipe stays: it makes these bytes.
    assert ImageRecipe.objects.filter(image=image).count() == 1
    assert image.recipe.job == first
    assert Image.objects.count() == 1


def test_a_prompt_past_the_models_77_tokens_says_what_was_cut(gen_env: Path) -> None:
    # The tiny model's tokenizer is byte-level: one token per character.
    job = run_job(create(prompt="x" * 80))
    assert job.status == "succeeded", job.error
    assert job.message.endswith(
        "the prompt's last 5 token(s) were cut (the model reads 77)"
    )
    short = run_job(create(prompt="a cat", seed=5))
    assert "cut" not in short.message


def test_a_different_seed_makes_a_different_image(gen_env: Path) -> None:
    one = run_job(create(seed=1))
    two = run_job(create(seed=2))
    a, b = (Image.objects.get(pk=j.image_ids[0]) for j in (one, two))
    assert a.sha256 != b.sha256


def test_two_loras_at_different_weights_change_the_image_and_both_are_recorded(
    loras: tuple[Any, Any],
) -> None:
    blocks, inverse = loras

    def sha(stack: list[tuple[str, float]]) -> str:
        job = run_job(create(loras=stack, insert_trigger_words=False))
        assert job.status == "succeeded", job.error
        return Image.objects.get(pk=job.image_ids[0]).sha256

    plain = sha([])
    stacked = sha([("blocks", 1.0), ("inverse", 0.3)])
    reweighted = sha([("blocks", 0.3), ("inverse", 1.0)])
    assert len({plain, stacked, reweighted}) == 3
    recipe = Image.objects.get(sha256=reweighted).recipe.recipe
    assert recipe["loras"] == [
        {"name": "blocks", "weight": 0.3, "sha256": blocks.sha256},
        {"name": "inverse", "weight": 1.0, "sha256": inverse.sha256},
    ]
    assert recipe["prompt"] == "a cat"  # trigger words opted out


def test_trigger_words_are_put_in_front_unless_present() -> None:
    assert prompt_with_trigger_words("a cat", ["zxq", "qqv"]) == "zxq, qqv, a cat"
    assert prompt_with_trigger_words("a ZXQ cat", ["zxq", "qqv"]) == "qqv, a ZXQ cat"
    assert prompt_with_trigger_words("zxqq cat", ["zxq"]) == "zxq, zxqq cat"
    assert prompt_with_trigger_words("a cat", []) == "a cat"


def test_the_stack_records_weights_hashes_and_trigger_words(
    loras: tuple[Any, Any],
) -> None:
    blocks, inverse = loras
    job = create(loras=[("inverse", None), (blocks.pk, -1.5)])
    assert job.loras == [
        {
            "lora_id": inverse.pk,
            "name": "inverse",
            "weight": 0.5,  # its default weight
            "sha256": inverse.sha256,
            "trigger_words": ["qqv", "blk"],
        },
        {
            "lora_id": blocks.pk,
            "name": "blocks",
            "weight": -1.5,
            "sha256": blocks.sha256,
            "trigger_words": ["zxq"],
        },
    ]
    assert effective_prompt(job) == "qqv, blk, zxq, a cat"


@pytest.mark.parametrize(
    ("overrides", "field", "says"),
    [
        ({"prompt": "  "}, "prompt", "a prompt is required"),
        ({"prompt": "x" * 1001}, "prompt", "at most 1000 characters"),
        ({"width": 100}, "width", "a multiple of 8 from 64 to 1024"),
        ({"height": 2048}, "height", "a multiple of 8 from 64 to 1024"),
        ({"steps": 0}, "steps", "from 1 to 150"),
        ({"guidance": 31.0}, "guidance", "from 0 to 30"),
        ({"num_images": 9}, "num_images", "from 1 to 8"),
        ({"seed": -1}, "seed", "from 0 to 4294967295"),
        ({"scheduler": "magic"}, "scheduler", "unknown scheduler 'magic'"),
        ({"loras": [("nope", 1.0)]}, "loras", "unknown LoRA 'nope'"),
        ({"loras": [("blocks", 5.0)]}, "loras", "must be between -4.0 and 4.0"),
        ({"loras": [("blocks", 1), ("blocks", 1)]}, "loras", "listed twice"),
    ],
)
def test_invalid_requests_name_the_field_and_why(
    loras: tuple[Any, Any], overrides: dict[str, Any], field: str, says: str
) -> None:
    with pytest.raises(GenerationInvalid) as caught:
        create(**overrides)
    assert says in caught.value.errors[field]
    assert not GenerationJob.objects.exists()


def test_a_lora_of_unknown_family_for_another_base_model_is_refused(
    loras: tuple[Any, Any],
) -> None:
    """Without a family to compare, the base models' names decide (families:
    test_lora_family)."""
    blocks, _ = loras
    blocks.base_model = "stabilityai/stable-diffusion-xl-base-1.0"
    blocks.family = ""
    blocks.save()
    with pytest.raises(GenerationInvalid) as caught:
        create(loras=[("blocks", 1.0)])
    assert "was made for base model 'stabilityai/stable-diffusion-xl" in str(
        caught.value
    )


def test_the_base_model_rule() -> None:
    hub = "stable-diffusion-v1-5/stable-diffusion-v1-5"
    assert same_base_model(hub, hub.upper() + "/")
    assert same_base_model("/models/stable-diffusion-v1-5", hub)
    assert same_base_model("", hub) and same_base_model(hub, "")
    assert not same_base_model("stabilityai/sdxl-base", hub)


def test_no_base_model_at_all_is_a_clear_error(settings: Any, tmp_path: Path) -> None:
    settings.GENERATION_BASE_MODEL = ""
    settings.TRAINING_BASE_MODEL = ""
    settings.VAR_DIR = tmp_path  # no tiny model built there
    with pytest.raises(GenerationInvalid) as caught:
        create()
    assert "GENERATION_BASE_MODEL" in caught.value.errors["base_model"]


def test_cancel_a_queued_job_at_once(gen_env: Path) -> None:
    job = create()
    assert run_request_cancel(job)
    assert job.status == "cancelled"
    assert run_job(job).image_ids == []
    assert not run_request_cancel(job)  # already ended


def test_cancel_a_running_job_stops_it_between_steps(
    gen_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(generation_runs, "STOP_POLL_SECONDS", 0)
    job = create(num_images=4, steps=3)
    GenerationJob.objects.filter(pk=job.pk).update(status="running")
    job.refresh_from_db()

    def cancel_after_the_first(job: GenerationJob, image: Image) -> None:
        run_request_cancel(GenerationJob.objects.get(pk=job.pk))

    from imagineer_project.runs import RunCancelled

    with pytest.raises(RunCancelled):
        generation_job_execute(job, on_image=cancel_after_the_first)
    job.refresh_from_db()
    assert len(job.image_ids) == 1 and job.progress_done == 3  # its 3 steps
    assert Image.objects.count() == 1


def test_a_task_delivered_twice_runs_once_and_a_resumed_job_adds_only_the_rest(
    gen_env: Path,
) -> None:
    job = run_job(create(num_images=3))
    run_job(job)  # second delivery: not claimable, nothing happens
    assert Image.objects.count() == 3 and ImageRecipe.objects.count() == 3

    # A worker died after storing image 2 of 3 but before listing it.
    GenerationJob.objects.filter(pk=job.pk).update(
        status="queued", image_ids=job.image_ids[:1], progress_done=1
    )
    resumed = run_job(job)
    assert resumed.status == "succeeded", resumed.error
    assert resumed.image_ids == job.image_ids
    assert Image.objects.count() == 3 and ImageRecipe.objects.count() == 3
    assert AlbumImage.objects.filter(album=job.album).count() == 3


def test_a_deleted_lora_fails_the_job_clearly(loras: tuple[Any, Any]) -> None:
    blocks, _ = loras
    job = create(loras=[("blocks", 1.0)])
    blocks.delete()
    job = run_job(job)
    assert job.status == "failed"
    assert "LoRA 'blocks' was deleted after the job was queued" in job.error


def test_lora_files_on_remote_storage_are_cached_by_hash(
    loras: tuple[Any, Any], settings: Any, tmp_path: Path, monkeypatch: Any
) -> None:
    from django.core.files.storage import default_storage

    blocks, _ = loras
    settings.GENERATION_LORA_CACHE_DIR = str(tmp_path / "cache")

    class Remote:  # like S3: files open, but have no local path
        def open(self, name: str, mode: str = "rb") -> Any:
            return default_storage.open(name, mode)

        def path(self, name: str) -> str:
            raise NotImplementedError

    monkeypatch.setattr(generation_runs, "default_storage", Remote())
    entry = {"lora_id": blocks.pk, "sha256": blocks.sha256, "name": "blocks"}
    path = local_lora_path(entry)
    assert path == tmp_path / "cache" / f"{blocks.sha256}.safetensors"
    assert path.read_bytes() == blocks.file.open("rb").read()
    assert local_lora_path(entry) == path
    assert [p.name for p in path.parent.iterdir()] == [path.name]


def test_parse_lora_lines() -> None:
    assert parse_lora_lines("blocks:0.8\n inverse \n\nmy:style:-1, x:y") == [
        ("blocks", 0.8),
        ("inverse", None),
        ("my:style", -1.0),
        ("x:y", None),
    ]


def test_recipe_form_query_fills_the_form_without_adding_trigger_words() -> None:
    query = recipe_form_query(
        {
            "prompt": "zxq, a cat",
            "seed": 9,
            "loras": [{"name": "blocks", "weight": 0.75, "sha256": "ab"}],
        }
    )
    assert "prompt=zxq%2C+a+cat" in query and "seed=9" in query
    assert "loras=blocks%3A0.75" in query and "insert_trigger_words=0" in query


def test_generated_lookalikes(gen_env: Path) -> None:
    job = run_job(create())
    generated = Image.objects.get(pk=job.image_ids[0])
    other = make_image(seed=5)
    # A scraped copy: the same picture re-encoded, so another sha256.
    from io import BytesIO

    from PIL import Image as PILImage

    with generated.file.open("rb") as fh:
        buffer = BytesIO()
        PILImage.open(fh).convert("RGB").save(buffer, "JPEG", quality=90)
    from albums.services import image_ingest

    copy = image_ingest(
        data=buffer.getvalue(), filename="copy.jpg", source_kind="scrape"
    ).image
    assert copy.pk != generated.pk
    found = generated_lookalikes([copy.pk, other.pk, generated.pk])
    assert found == {copy.pk: generated.pk, generated.pk: generated.pk}
    assert generated_phash_index().nearest(generated.phash, 0)[0][0] == (generated.pk)


def test_the_creator_is_recorded_and_owns_the_album(gen_env: Path) -> None:
    user = make_user(username="maker", staff=True)
    job = generation_job_create(
        request=small_request(album="Mine"), created_by=user, enqueue=False
    )
    assert job.created_by == user and job.album.created_by == user
    existing = make_album(name="Existing")
    job = generation_job_create(
        request=small_request(album="Existing"), created_by=user, enqueue=False
    )
    assert job.album == existing
