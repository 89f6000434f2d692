"""The trainer's options on the Django side: the new config fields' ranges and
the rules across fields, the presets, the add form's sections, and a real tiny
run that trains with regularisation images, a validation split and per-album
repeats."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from albums.tests.builders import make_image
from training.config import (
    FIELDS,
    ConfigInvalid,
    config_validate,
)
from training.datasets.export import export_plan
from training.datasets.services import dataset_version_build
from training.ml.config import TrainSample
from training.models import TrainingRun
from training.presets import PRESETS, preset_config
from training.runs import training_run_execute, validation_split
from training.tests.builders import make_tiny_run, make_training_album
from training.tests.test_admin_training import add_form

RUNS = "/admin/training/trainingrun/"


# --- config fields and rules ----------------------------------------------------------


def test_new_options_out_of_range_name_the_field_and_the_range() -> None:
    with pytest.raises(ConfigInvalid) as raised:
        config_validate(
            {
                "min_snr_gamma": 25,
                "noise_offset": 0.6,
                "caption_dropout": 0.7,
                "validation_split": 0.9,
                "bucket_max_side": 4096,
                "lora_targets": "everything",
                "optimizer": "sgd",
                "train_text_encoder": "yes",
            }
        )
    assert raised.value.errors == {
        "min_snr_gamma": "min_snr_gamma must be between 0.0 and 20.0 (got 25.0)",
        "noise_offset": "noise_offset must be between 0.0 and 0.5 (got 0.6)",
        "caption_dropout": "caption_dropout must be between 0.0 and 0.5 (got 0.7)",
        "validation_split": "validation_split must be between 0.0 and 0.5 (got 0.9)",
        "bucket_max_side": "bucket_max_side must be between 0 and 2048 (got 4096)",
        "lora_targets": "lora_targets must be one of transformer, attention, "
        "transformer+conv (got 'everything')",
        "optimizer": "optimizer must be one of adamw, adamw8bit, prodigy (got 'sgd')",
        "train_text_encoder": "train_text_encoder must be true or false (got 'yes')",
    }


def test_the_learning_rate_range_follows_the_optimizer() -> None:
    # Prodigy scales its own step size: it wants about 1.0, and gets it unasked.
    config, _ = config_validate({"optimizer": "prodigy"})
    assert (config["learning_rate"], config["text_encoder_lr"]) == (1.0, 1.0)
    with pytest.raises(ConfigInvalid) as raised:
        config_validate({"optimizer": "prodigy", "learning_rate": 1e-4})
    assert raised.value.errors == {
        "learning_rate": "learning_rate must be between 0.1 and 2.0 (got 0.0001)"
    }
    with pytest.raises(ConfigInvalid) as raised:
        config_validate({"optimizer": "adamw", "learning_rate": 1.0})
    assert raised.value.errors == {
        "learning_rate": "learning_rate must be between 1e-06 and 0.01 (got 1.0)"
    }


def test_bucket_sides_must_bracket_the_resolution() -> None:
    with pytest.raises(ConfigInvalid) as raised:
        config_validate(
            {"resolution": 512, "bucket_min_side": 768, "bucket_max_side": 384}
        )
    assert raised.value.errors == {
        "bucket_min_side": "bucket_min_side must be at most the resolution 512 "
        "(got 768)",
        "bucket_max_side": "bucket_max_side must be at least the resolution 512 "
        "(got 384)",
    }
    # Square crops ignore bucket sides.
    config_validate({"bucketing": False, "bucket_min_side": 768})


def test_an_unset_resolution_follows_the_base_model_family(
    settings: Any, tiny_base: Path, tiny_sdxl_base: Path
) -> None:
    settings.TRAINING_DEFAULTS = {**settings.TRAINING_DEFAULTS, "resolution": 768}
    assert config_validate({}, base_model=str(tiny_sdxl_base))[0]["resolution"] == 1024
    assert config_validate({}, base_model=str(tiny_base))[0]["resolution"] == 512
    # No readable family: the configured default; a set resolution always wins.
    assert config_validate({}, base_model="/nowhere")[0]["resolution"] == 768
    config, _ = config_validate({"resolution": 640}, base_model=str(tiny_sdxl_base))
    assert config["resolution"] == 640


@pytest.mark.django_db
def test_adamw8bit_is_refused_when_the_training_device_has_no_cuda(
    train_env: Path,
) -> None:
    with pytest.raises(ConfigInvalid) as raised:
        make_tiny_run(optimizer="adamw8bit")
    assert raised.value.errors == {
        "optimizer": "adamw8bit (bitsandbytes) needs a CUDA GPU; the training "
        "device here is cpu (TRAINING_DEVICE='cpu'): choose adamw or prodigy"
    }
    assert not TrainingRun.objects.exists()


@pytest.mark.django_db
def test_a_reg_album_must_exist_and_not_be_a_training_album(train_env: Path) -> None:
    with pytest.raises(ConfigInvalid) as raised:
        make_tiny_run(reg_album=999999)
    assert raised.value.errors == {"reg_album": "reg_album names no album (got 999999)"}
    album = make_training_album(3)
    with pytest.raises(ConfigInvalid) as raised:
        make_tiny_run(dataset=dataset_version_build(albums=[album]), reg_album=album.pk)
    assert raised.value.errors == {
        "reg_album": "reg_album 'Blocks' is one of the dataset's own albums"
    }


def test_every_preset_but_the_smoke_test_lies_inside_the_ranges() -> None:
    for preset in PRESETS:
        config, warnings = config_validate(
            preset_config(preset.key), allow_below_minimum=True
        )
        assert (preset.key, warnings != []) == (preset.key, preset.key == "smoke")
    prodigy = preset_config("prodigy")
    assert (prodigy["optimizer"], prodigy["learning_rate"]) == ("prodigy", 1.0)
    assert (prodigy["lr_scheduler"], prodigy["warmup_steps"]) == ("constant", 0)
    assert preset_config("sdxl")["resolution"] == 1024


def test_validation_split_holds_out_the_same_images_for_the_same_seed() -> None:
    samples = [TrainSample(f"{i}.png", f"caption {i}") for i in range(10)]
    training, held = validation_split(samples, 0.2, seed=3)
    assert (len(training), len(held)) == (8, 2)
    assert set(training) | set(held) == set(samples)
    assert validation_split(samples, 0.2, seed=3) == (training, held)
    others = [validation_split(samples, 0.2, seed=s)[1] for s in range(4, 10)]
    assert any(other != held for other in others)
    # Never the whole dataset, never nothing once asked for.
    assert len(validation_split(samples[:2], 0.5, seed=0)[0]) == 1
    assert len(validation_split(samples[:3], 0.01, seed=0)[1]) == 1
    assert validation_split(samples, 0.0, seed=0) == (samples, [])


# --- the add form ------------------------------------------------------------------


@pytest.mark.django_db
def test_the_add_form_shows_every_option_in_its_section(
    admin_client: Any, train_env: Path
) -> None:
    page = admin_client.get(f"{RUNS}add/")
    sections = dict(page.context["form"].sections())
    assert list(sections) == [
        "Data",
        "Run",
        "Basics",
        "Network",
        "Data & captions",
        "Optimisation",
        "Checkpoints & samples",
    ]
    shown = {field.name for fields in sections.values() for field in fields}
    assert {spec.name for spec in FIELDS} <= shown
    text = page.text
    assert '<details class="train-advanced">' in text
    assert "<summary>Optimisation</summary>" in text
    assert 'name="min_snr_gamma"' in text and "0.0–20.0; default 0.0." in text
    assert "prodigy: 0.1–2.0" in text  # the learning rate's other range


@pytest.mark.django_db
def test_the_add_form_saves_the_new_options_and_album_repeats(
    admin_client: Any, train_env: Path
) -> None:
    album = make_training_album(3)
    reg = make_training_album(3, name="People", trigger_word="person", first_seed=50)
    data = add_form(
        [album],
        config={
            "optimizer": "prodigy",  # the learning rates left at AdamW's default
            "lora_targets": "transformer+conv",
            "train_text_encoder": True,
            "shuffle_tags": True,
            "keep_tokens": 1,
            "min_snr_gamma": 5.0,
            "reg_album": reg.pk,
            "validation_split": 0.25,
        },
        album_repeats="blocks=3",
    )
    data.pop("start")
    response = admin_client.post(f"{RUNS}add/", data)
    assert response.status_code == 302, response.context["form"].errors
    run = TrainingRun.objects.get()
    assert {
        name: run.config[name]
        for name in (
            "optimizer",
            "learning_rate",
            "text_encoder_lr",
            "lora_targets",
            "train_text_encoder",
            "shuffle_tags",
            "keep_tokens",
            "min_snr_gamma",
            "reg_album",
            "validation_split",
            "resolution",
        )
    } == {
        "optimizer": "prodigy",
        "learning_rate": 1.0,
        "text_encoder_lr": 1.0,
        "lora_targets": "transformer+conv",
        "train_text_encoder": True,
        "shuffle_tags": True,
        "keep_tokens": 1,
        "min_snr_gamma": 5.0,
        "reg_album": reg.pk,
        "validation_split": 0.25,
        "resolution": 512,  # the tiny SD 1.5 model's family
    }
    assert [item["repeats"] for item in run.dataset.manifest["items"]] == [3, 3, 3]


@pytest.mark.django_db
def test_album_repeats_naming_an_album_not_chosen_are_refused(
    admin_client: Any, train_env: Path
) -> None:
    album = make_training_album(3)
    response = admin_client.post(
        f"{RUNS}add/", add_form([album], album_repeats="elsewhere=2")
    )
    assert response.context["form"].errors == {
        "album_repeats": ["'elsewhere' is not one of the chosen albums."]
    }


# --- a real run ----------------------------------------------------------------------


@pytest.mark.django_db
def test_reg_images_validation_split_and_repeats_reach_the_trainer(
    train_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from training.ml import trainer

    album = make_training_album(6)
    people = make_training_album(2, name="People", trigger_word="person", first_seed=70)
    make_image(album=people, seed=80, size=(64, 64))  # uncaptioned: the class word
    dataset = dataset_version_build(albums=[album], repeats={album.pk: 3})
    run = make_tiny_run(
        dataset=dataset,
        steps=2,
        checkpoint_every=2,
        reg_album=people.pk,
        reg_weight=0.5,
        validation_split=0.34,
    )
    calls = []
    real = trainer.train_lora

    def spy(config: Any, samples: Any, **options: Any) -> Any:
        every = [*samples, *options["reg_samples"], *options["validation_samples"]]
        assert all(Path(s.image_path).is_file() for s in every)
        calls.append((config, list(samples), options))
        return real(config, samples, **options)

    monkeypatch.setattr(trainer, "train_lora", spy)
    training_run_execute(run)

    run.refresh_from_db()
    assert run.loras.count() == 1
    [(config, samples, options)] = calls
    validation = options["validation_samples"]
    reg = options["reg_samples"]
    assert (len(samples), len(validation)) == (4, 2)
    assert {s.repeats for s in samples} == {3}
    assert all(s.caption.startswith("zxq, a blocky picture number") for s in samples)
    assert sorted(s.caption for s in reg) == [
        "a blocky picture number 0",
        "a blocky picture number 1",
        "person",
    ]
    assert config.reg_weight == 0.5
    # The manifest records every option and which images were held out.
    assert set(run.manifest["config"]) == {spec.name for spec in FIELDS}
    held = {Path(s.image_path).name for s in validation}
    assert set(run.manifest["validation_images"]) == held
    assert run.manifest["regularisation"]["images"] == 3
    assert len(run.manifest["regularisation"]["sha256"]) == 64


@pytest.mark.django_db
def test_per_album_repeats_make_the_kohya_export_folders(train_env: Path) -> None:
    first = make_training_album(3)
    second = make_training_album(3, name="More", first_seed=40)
    dataset = dataset_version_build(albums=[first, second], repeats={second.pk: 4})
    folders = sorted(
        {f.name.split("/")[0] for f in export_plan(dataset, "kohya", repeats=10)}
    )
    assert folders == ["10_zxq", "40_zxq"]


@pytest.mark.django_db
def test_repeats_of_one_keep_the_version_and_other_repeats_make_a_new_one(
    train_env: Path,
) -> None:
    album = make_training_album(3)
    plain = dataset_version_build(albums=[album])
    assert dataset_version_build(albums=[album], repeats={album.pk: 1}) == plain
    tripled = dataset_version_build(albums=[album], repeats={album.pk: 3})
    assert tripled != plain
    assert [item.get("repeats") for item in plain.manifest["items"]] == [None] * 3
