"""A LoRA's model family: read when a file is imported (metadata, then
SDXL's text-encoder keys), the run's when a run registers it, filled into
rows made before families by a migration; generation and sets refuse a LoRA
of another family than the base model's with a 422 naming both, and the
generate form offers only the base model's family."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from training.generation.services import GenerationInvalid, generation_job_create
from training.models import GenerationJob, Lora, SetRun
from training.registry import lora_import
from training.sets.services import SetInvalid, SetRequest, set_run_create
from training.tests.builders import QUIET, SMALL, small_request

pytestmark = [pytest.mark.django_db, QUIET]


def lora_bytes(
    prefixes: tuple[str, ...], metadata: dict[str, str], **extra: Any
) -> bytes:
    """A small kohya LoRA: one linear module (rank 4) per prefix, plus
    `extra` tensors."""
    import numpy as np
    from safetensors.numpy import save

    tensors = dict(extra)
    for prefix in prefixes:
        tensors[f"{prefix}blocks_0_to_q.lora_down.weight"] = np.ones(
            (4, 32), np.float32
        )
        tensors[f"{prefix}blocks_0_to_q.lora_up.weight"] = np.ones((32, 4), np.float32)
        tensors[f"{prefix}blocks_0_to_q.alpha"] = np.array(4.0, np.float32)
    return save(tensors, metadata=metadata)


def imported(name: str, data: bytes, **options: Any) -> Lora:
    return lora_import(file=io.BytesIO(data), name=name, **options)


def sdxl_lora(name: str = "neon-xl", **options: Any) -> Lora:
    """An SDXL LoRA as sd-scripts writes one: both text encoders' keys, no
    family in its metadata."""
    data = lora_bytes(("lora_unet_", "lora_te1_", "lora_te2_"), {"ss_network_dim": "4"})
    return imported(name, data, **options)


# --- reading the family --------------------------------------------------------


def test_an_sdxl_file_imports_as_sdxl_from_its_two_text_encoders_keys() -> None:
    lora = sdxl_lora()
    assert (lora.family, lora.rank, lora.get_family_display()) == ("sdxl", 4, "SDXL")


@pytest.mark.parametrize(
    ("metadata", "family"),
    [
        ({"family": "sd2"}, "sd2"),
        ({"ss_base_model_version": "sdxl_base_v1-0"}, "sdxl"),
        ({"ss_base_model_version": "sd_v2_768_v"}, "sd2"),
        ({"ss_base_model_version": "sd_v1"}, "sd1"),
        ({"ss_v2": "True"}, "sd2"),
        ({}, ""),  # an SD file that says nothing: unknown, not guessed
    ],
)
def test_an_imported_files_family_comes_from_its_metadata(
    metadata: dict[str, str], family: str
) -> None:
    lora = imported("x", lora_bytes(("lora_unet_", "lora_te_"), metadata))
    assert lora.family == family


def test_a_full_size_files_family_comes_from_its_cross_attention_width() -> None:
    import numpy as np

    key = "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn2_to_k"
    extra = {
        f"{key}.lora_down.weight": np.zeros((8, 1024), np.float32),
        f"{key}.lora_up.weight": np.zeros((640, 8), np.float32),
        f"{key}.alpha": np.array(8.0, np.float32),
    }
    assert imported("x", lora_bytes((), {}, **extra)).family == "sd2"


def test_a_locon_file_imports_with_its_linear_rank() -> None:
    """LoCon: 3x3 conv modules hold 4-D down (rank, in, 3, 3) and up (out,
    rank, 1, 1) weights, of their own rank (conv_dim)."""
    import numpy as np

    conv = "lora_unet_down_blocks_0_resnets_0_conv1"
    extra = {
        f"{conv}.lora_down.weight": np.ones((2, 32, 3, 3), np.float32),
        f"{conv}.lora_up.weight": np.ones((32, 2, 1, 1), np.float32),
        f"{conv}.alpha": np.array(1.0, np.float32),
    }
    data = lora_bytes(
        ("lora_unet_a_", "lora_unet_b_"), {"ss_base_model_version": "sd_v1"}, **extra
    )
    lora = imported("locon", data)
    assert (lora.family, lora.rank, lora.alpha) == ("sd1", 4, None)


def test_a_run_registers_its_lora_with_the_runs_family(train_env: Path) -> None:
    from training.runs import run_work_dir
    from training.tasks import run_training
    from training.tests.builders import make_tiny_run

    run = make_tiny_run(steps=2, checkpoint_every=2)
    run_training(run.pk)
    run.refresh_from_db()
    assert run.status == "succeeded", run.error
    lora = Lora.objects.get(source_run=run)
    assert (lora.family, lora.source_step) == ("sd1", 2)
    assert (run_work_dir(run) / "out/snapshots/step-000002/lora.safetensors").is_file()


# --- refusing another family ---------------------------------------------------


def test_generation_refuses_a_lora_of_another_family_naming_both(
    gen_env: Path,
) -> None:
    sdxl_lora()
    with pytest.raises(GenerationInvalid) as caught:
        generation_job_create(request=small_request(loras=[("neon-xl", 1.0)]))
    assert caught.value.errors == {
        "loras": f"'neon-xl' is an SDXL LoRA; base model {gen_env.name!r} is SD 1.5"
    }
    assert not GenerationJob.objects.exists()


def test_the_api_answers_422_for_a_lora_of_another_family(
    call_as: Any, gen_env: Path
) -> None:
    sdxl_lora()
    body = {"prompt": "a cat", **SMALL, "loras": [{"name": "neon-xl"}]}
    response = call_as("token").post(
        "/api/generate", json.dumps(body), content_type="application/json"
    )
    assert response.status_code == 422
    assert response.json()["details"]["errors"]["loras"] == (
        f"'neon-xl' is an SDXL LoRA; base model {gen_env.name!r} is SD 1.5"
    )


def test_a_lora_of_the_same_family_on_another_checkpoint_is_allowed(
    gen_env: Path,
) -> None:
    """An SD 1.5 LoRA works on an SD 1.5 fine-tune: the family decides, not
    the base model's name."""
    lora = imported(
        "sd15-style",
        lora_bytes(("lora_unet_",), {"ss_base_model_version": "sd_v1"}),
        base_model="stable-diffusion-v1-5/stable-diffusion-v1-5",
    )
    job = generation_job_create(request=small_request(loras=[("sd15-style", 1.0)]))
    assert [e["lora_id"] for e in job.loras] == [lora.pk]


def test_a_lora_of_unknown_family_still_needs_the_same_base_model(
    gen_env: Path,
) -> None:
    imported(
        "mystery",
        lora_bytes(("lora_unet_",), {}),
        base_model="stabilityai/stable-diffusion-xl-base-1.0",
    )
    with pytest.raises(GenerationInvalid) as caught:
        generation_job_create(request=small_request(loras=[("mystery", 1.0)]))
    assert caught.value.errors["loras"] == (
        "'mystery' was made for base model "
        f"'stabilityai/stable-diffusion-xl-base-1.0', not {gen_env.name!r}"
    )


def test_a_set_refuses_a_lora_of_another_family(gen_env: Path) -> None:
    sdxl_lora()
    request = SetRequest(
        template="zodiac", theme="Neon", album="Signs", loras=[("neon-xl", 1.0)]
    )
    with pytest.raises(SetInvalid) as caught:
        set_run_create(request=request)
    assert caught.value.errors["loras"] == (
        f"'neon-xl' is an SDXL LoRA; base model {gen_env.name!r} is SD 1.5"
    )
    assert not SetRun.objects.exists()


def test_the_sets_api_answers_422_naming_both_families(
    call_as: Any, gen_env: Path
) -> None:
    from training.models import SetTemplate

    sdxl_lora()
    zodiac = SetTemplate.objects.get(slug="zodiac")
    body = {"theme": "Neon", "album": "Signs", **SMALL, "loras": [{"name": "neon-xl"}]}
    response = call_as("token").post(
        f"/api/set-templates/{zodiac.pk}/generate",
        json.dumps(body),
        content_type="application/json",
    )
    assert response.status_code == 422
    assert "'neon-xl' is an SDXL LoRA" in response.json()["details"]["errors"]["loras"]


def test_the_generate_form_offers_only_the_base_models_family(
    admin_client: Any, gen_env: Path
) -> None:
    sd1 = imported("blocks", lora_bytes(("lora_unet_",), {"family": "sd1"}))
    unknown = imported("mystery", lora_bytes(("lora_te_",), {}))
    sdxl_lora()
    form = admin_client.get("/admin/training/generationjob/add/").context["form"]
    assert form.family == "sd1"
    rows = [(row["lora"].name, row["family"]) for row in form.lora_rows()]
    assert rows == [(sd1.name, "SD 1.5"), (unknown.name, "")]


# --- rows made before families ---------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_migration_fills_family_and_step_from_what_rows_hold() -> None:
    executor = MigrationExecutor(connection)
    before = [("training", "0010_steptiming")]
    executor.migrate(before)
    old = executor.loader.project_state(before).apps
    Lora_ = old.get_model("training", "Lora")
    Run = old.get_model("training", "TrainingRun")
    Dataset = old.get_model("training", "DatasetVersion")
    dataset = Dataset.objects.create(name="d", manifest={}, manifest_sha256="d" * 64)
    runs = {
        name: Run.objects.create(
            name=name, dataset=dataset, base_model="m", config={"steps": 9}
        )
        for name in ("xl", "none")  # one LoRA per run then
    }
    rows = {
        "xl": {"ss_base_model_version": "sdxl_base_v1-0", "ss_steps": "1200"},
        "v2": {"ss_v2": "True"},
        "ours": {"family": "sd1"},
        "none": {},
    }
    for name, metadata in rows.items():
        Lora_.objects.create(
            name=name,
            file=f"loras/{name}",
            sha256=name.ljust(64, "0"),
            metadata=metadata,
            source_run=runs.get(name),
        )
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())
    found = {lora.name: (lora.family, lora.source_step) for lora in Lora.objects.all()}
    assert found == {
        "xl": ("sdxl", 1200),
        "v2": ("sd2", None),
        "ours": ("sd1", None),
        "none": ("", 9),  # the run's configured steps
    }
