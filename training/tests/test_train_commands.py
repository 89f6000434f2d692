"""manage.py train, import_lora and make_tiny_model."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from django.core.files.storage import default_storage
from django.core.management import CommandError, call_command

from training.ml.kohya import kohya_key_problems
from training.ml.tiny import is_complete
from training.models import Lora, TrainingRun
from training.tests.builders import (
    make_training_album,
)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("train_env")]


def run_command(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


SMOKE = (
    "--steps=3",
    "--resolution=64",
    "--rank=4",
    "--alpha=4",
    "--lr=1e-3",
    "--warmup=1",
    "--batch-size=2",
    "--grad-accum=1",
    "--checkpoint-every=0",
    "--sample-steps=1",
    "--mixed-precision=no",
)


def test_train_runs_in_the_foreground_and_registers_the_lora(settings: Any) -> None:
    make_training_album()
    out, err = run_command("train", "--album", "Blocks", *SMOKE)
    run = TrainingRun.objects.get()
    assert run.status == "succeeded"
    assert out.splitlines()[0] == (
        f"Training run #{run.pk} “Blocks”: 6 images, 3 steps at 64 px on "
        f"{settings.TRAINING_BASE_MODEL}"
    )
    assert run.message in out
    assert "Warning: steps 3 is below the usual minimum 500" in err
    assert "Warning: resolution 64 is below the usual minimum 256" in err
    assert "3/3" in err  # the progress bar
    lora = Lora.objects.get(source_run=run)
    assert f"LoRA #{lora.pk} stored as loras/{lora.sha256}.safetensors" in out
    assert kohya_key_problems(default_storage.path(lora.file.name)) == []


def test_train_with_enqueue_queues_for_the_gpu_worker(
    django_capture_on_commit_callbacks: Any,
) -> None:
    make_training_album()
    with django_capture_on_commit_callbacks() as callbacks:
        out, _ = run_command(
            "train", "--album", "blocks", "--steps", "600", "--enqueue", "--name", "v1"
        )
    run = TrainingRun.objects.get()
    assert (run.name, run.status, run.config["steps"]) == ("v1", "queued", 600)
    assert run.enqueued_at is not None and len(callbacks) == 1
    assert "Queued for the gpu worker" in out


def test_train_takes_every_option_and_album_repeats() -> None:
    make_training_album()
    run_command(
        "train",
        "--album",
        "blocks",
        "--repeats",
        "5",
        "--optimizer",
        "prodigy",
        "--lora-targets",
        "attention",
        "--train-text-encoder",
        "--no-bucketing",
        "--min-snr-gamma",
        "5",
        "--validation-split",
        "0.2",
        "--enqueue",
    )
    run = TrainingRun.objects.get()
    assert {
        name: run.config[name]
        for name in (
            "optimizer",
            "learning_rate",
            "lora_targets",
            "train_text_encoder",
            "bucketing",
            "min_snr_gamma",
            "validation_split",
        )
    } == {
        "optimizer": "prodigy",
        "learning_rate": 1.0,
        "lora_targets": "attention",
        "train_text_encoder": True,
        "bucketing": False,
        "min_snr_gamma": 5.0,
        "validation_split": 0.2,
    }
    assert {item["repeats"] for item in run.dataset.manifest["items"]} == {5}


def test_ctrl_c_ends_the_run_as_cancelled(monkeypatch: Any) -> None:
    from training import runs

    def interrupted(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(runs, "dataset_materialize", interrupted)
    make_training_album()
    with pytest.raises(CommandError, match="cancelled: Cancelled"):
        run_command("train", "--album", "Blocks", *SMOKE)
    run = TrainingRun.objects.get()
    assert run.status == "cancelled"
    assert run.log_tail.splitlines()[-1].endswith("Interrupted at step 0")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--album", "Nope"), "No album named 'Nope'."),
        (("--album", "Blocks", "--rank", "2"), "rank must be between 4 and 32"),
        (("--album", "Blocks", "--steps", "0"), "steps must be between 500 and 5000"),
        (("--album", "Few"), "2 captioned"),
        (
            ("--album", "Blocks", "--optimizer", "prodigy", "--lr", "1e-4"),
            r"learning_rate must be between 0.1 and 2.0 \(got 0.0001\)",
        ),
        (("--album", "Blocks", "--repeats", "2", "--repeats", "3"), "one repeats"),
    ],
)
def test_train_refuses_bad_requests(args: tuple[str, ...], message: str) -> None:
    make_training_album()
    make_training_album(2, name="Few", first_seed=3000)
    with pytest.raises(CommandError, match=message):
        run_command("train", *args)
    assert not TrainingRun.objects.exists()


def test_import_lora(trained_lora: Any, tmp_path: Path) -> None:
    out, _ = run_command(
        "import_lora",
        trained_lora.lora_path,
        "--name",
        "Blocks",
        "--trigger-word",
        "zxq",
        "--trigger-word",
        "blocky",
        "--weight",
        "0.6",
    )
    lora = Lora.objects.get()
    assert out.strip() == (
        f"Imported LoRA #{lora.pk} “Blocks”: rank 4, {lora.size:,} bytes, trigger "
        f"words: zxq, blocky, sha256 {lora.sha256}"
    )
    assert lora.default_weight == 0.6
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file at all")
    with pytest.raises(CommandError, match="Not a .safetensors file"):
        run_command("import_lora", str(bad), "--name", "Bad")
    with pytest.raises(CommandError, match="No such file"):
        run_command("import_lora", str(tmp_path / "missing"), "--name", "Gone")


def test_make_tiny_model_builds_once_and_prints_the_folder(
    tmp_path: Path, settings: Any
) -> None:
    settings.VAR_DIR = tmp_path
    out, _ = run_command("make_tiny_model")
    folder = tmp_path / "models" / "tiny-sd"
    assert out.strip() == str(folder.resolve()) and is_complete(folder)
    again, _ = run_command("make_tiny_model", str(folder))
    assert again == out
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    with pytest.raises(CommandError, match="is not a tiny pipeline"):
        run_command("make_tiny_model", str(tmp_path / "taken"))
