"""train_lora on the tiny real pipeline: steps, checkpoints, snapshots, buckets,
resume, cancel, errors."""

from __future__ import annotations

import json
import math
import stat
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from training.ml.config import InvalidTrainingInput, NonFiniteLoss, TrainSample
from training.ml.trainer import train_lora
from training.tests.conftest import make_train_config


class Crash(Exception):
    """Stands in for a worker dying (or the Django side's cancel) mid-run."""


def raise_at(step: int, seen: list[int]) -> Any:
    def on_step(report: Any) -> None:
        seen.append(report.step)
        if report.step == step:
            raise Crash(f"stop at {step}")

    return on_step


def lora_tensors(path: str) -> dict[str, Any]:
    from safetensors.torch import load_file

    return load_file(path)


@pytest.fixture(scope="module")
def reference_run(tiny_base: Path, train_samples: list, tmp_path_factory: Any) -> Any:
    """4 uninterrupted steps, checkpoint every 2, with every callback recorded."""
    reports: list[Any] = []
    saved: list[tuple[int, str]] = []
    config = make_train_config(tiny_base, tmp_path_factory.mktemp("ml-ref"))
    result = train_lora(
        config,
        train_samples,
        on_step=reports.append,
        on_checkpoint=lambda step, path: saved.append((step, path)),
        log=lambda line: None,
    )
    return config, result, reports, saved


def test_training_reports_each_step_with_a_finite_loss(reference_run: Any) -> None:
    config, result, reports, _ = reference_run
    assert [r.step for r in reports] == [1, 2, 3, 4]
    assert {r.total_steps for r in reports} == {4}
    assert all(math.isfinite(r.loss) and r.loss > 0 for r in reports)
    # Warmup of 1 step: every step runs at the configured rate.
    assert [r.lr for r in reports] == [config.learning_rate] * 4
    elapsed = [r.elapsed_seconds for r in reports]
    assert elapsed == sorted(elapsed)
    assert reports[-1].eta_seconds == 0
    assert all(r.images_per_second > 0 for r in reports)
    assert result.steps_done == 4
    assert result.resumed_from_step == 0
    assert result.final_loss == reports[-1].loss


def test_checkpoints_every_n_steps_hold_lora_state_and_info(reference_run: Any) -> None:
    config, result, _, saved = reference_run
    root = Path(config.output_dir) / "checkpoints"
    # on_checkpoint hears of each step's snapshot, the lasting part.
    snapshots = Path(config.output_dir) / "snapshots"
    assert saved == [
        (2, str(snapshots / "step-000002")),
        (4, str(snapshots / "step-000004")),
    ]
    assert result.checkpoints == [str(root / "step-000002"), str(root / "step-000004")]
    for folder in result.checkpoints:
        names = sorted(p.name for p in Path(folder).iterdir())
        assert names == ["checkpoint.json", "lora.safetensors", "training_state.pt"]
    assert not [p for p in root.iterdir() if p.name.startswith(".tmp")]


def test_lora_file_is_written_readable_by_everyone(reference_run: Any) -> None:
    config, result, _, _ = reference_run
    path = Path(result.lora_path)
    assert path == Path(config.output_dir) / "lora.safetensors"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_only_the_last_three_checkpoints_are_kept(
    tiny_base: Path, train_samples: list, tmp_path: Path
) -> None:
    config = make_train_config(tiny_base, tmp_path, steps=5, checkpoint_every=1)
    result = train_lora(config, train_samples[:2], log=lambda line: None)
    assert [Path(p).name for p in result.checkpoints] == [
        "step-000003",
        "step-000004",
        "step-000005",
    ]


def test_resume_after_a_crash_finishes_with_the_uninterrupted_weights(
    reference_run: Any, train_samples: list, tmp_path: Path
) -> None:
    reference_config, reference, _, _ = reference_run
    config = make_train_config(Path(reference_config.base_model), tmp_path)
    seen: list[int] = []
    with pytest.raises(Crash):
        train_lora(config, train_samples, on_step=raise_at(3, seen), log=lambda s: None)
    assert seen == [1, 2, 3]
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == [
        "step-000002"
    ]
    assert not (tmp_path / "lora.safetensors").exists()

    resumed_steps: list[int] = []
    result = train_lora(
        config, train_samples, on_step=lambda r: resumed_steps.append(r.step)
    )
    assert result.resumed_from_step == 2
    assert resumed_steps == [3, 4]
    assert result.steps_done == 4
    # Same data order, noise and optimizer state as the run that never stopped.
    assert result.final_loss == pytest.approx(reference.final_loss, rel=1e-5)
    ours, theirs = lora_tensors(result.lora_path), lora_tensors(reference.lora_path)
    assert ours.keys() == theirs.keys()
    assert all(ours[k].allclose(theirs[k], atol=1e-6) for k in ours)


def test_running_a_finished_job_again_trains_nothing_and_rewrites_the_same_file(
    reference_run: Any, train_samples: list
) -> None:
    config, reference, _, _ = reference_run
    before = Path(reference.lora_path).read_bytes()
    steps: list[int] = []
    again = train_lora(config, train_samples, on_step=lambda r: steps.append(r.step))
    assert steps == []
    assert again.resumed_from_step == 4
    assert again.steps_done == 4
    assert again.final_loss == pytest.approx(reference.final_loss)
    assert Path(again.lora_path).read_bytes() == before


def test_an_exception_from_on_step_propagates_unchanged_and_stops(
    tiny_base: Path, train_samples: list, tmp_path: Path
) -> None:
    class Cancelled(Exception):
        pass

    cancel = Cancelled("user cancelled")
    calls: list[int] = []

    def on_step(report: Any) -> None:
        calls.append(report.step)
        raise cancel

    config = make_train_config(tiny_base, tmp_path, steps=50, checkpoint_every=0)
    with pytest.raises(Cancelled) as raised:
        train_lora(config, train_samples, on_step=on_step)
    assert raised.value is cancel
    assert calls == [1]
    assert not (tmp_path / "lora.safetensors").exists()


def test_a_diverging_run_raises_non_finite_loss_naming_the_step(
    tiny_base: Path, train_samples: list, tmp_path: Path
) -> None:
    config = make_train_config(
        tiny_base, tmp_path, steps=10, learning_rate=1e6, checkpoint_every=0
    )
    with pytest.raises(NonFiniteLoss) as raised:
        train_lora(config, train_samples)
    assert 1 < raised.value.step <= 10
    assert f"at step {raised.value.step}" in str(raised.value)
    assert "lower the learning rate" in str(raised.value)


def test_other_options_train_too(
    tiny_base: Path, train_samples: list, tmp_path: Path
) -> None:
    """Gradient checkpointing, accumulation, random crops, no flips, no checkpoints."""
    config = make_train_config(
        tiny_base,
        tmp_path,
        steps=2,
        batch_size=1,
        gradient_accumulation=2,
        gradient_checkpointing=True,
        center_crop=False,
        random_flip=False,
        checkpoint_every=0,
        output_name="my-style",
    )
    result = train_lora(config, train_samples)
    assert math.isfinite(result.final_loss)
    assert result.lora_path == str(tmp_path / "my-style.safetensors")
    assert result.checkpoints == []
    assert not (tmp_path / "checkpoints").exists()


def test_v_prediction_models_train_too(
    tiny_base: Path, train_samples: list, tmp_path: Path
) -> None:
    import json
    import shutil

    base = Path(shutil.copytree(tiny_base, tmp_path / "v-model"))
    config_file = base / "scheduler" / "scheduler_config.json"
    scheduler = json.loads(config_file.read_text())
    config_file.write_text(json.dumps({**scheduler, "prediction_type": "v_prediction"}))
    config = make_train_config(base, tmp_path / "out", steps=1, checkpoint_every=0)
    result = train_lora(config, train_samples[:2])
    assert math.isfinite(result.final_loss)


def test_missing_base_model_folder_is_invalid_input(
    train_samples: list, tmp_path: Path
) -> None:
    config = make_train_config(tmp_path / "nowhere", tmp_path / "out")
    with pytest.raises(InvalidTrainingInput, match="does not exist"):
        train_lora(config, train_samples)


def test_a_folder_that_is_not_a_pipeline_is_invalid_input(
    train_samples: list, tmp_path: Path
) -> None:
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "weights.safetensors").write_bytes(b"")
    config = make_train_config(tmp_path / "model", tmp_path / "out")
    with pytest.raises(InvalidTrainingInput, match="not a diffusers pipeline folder"):
        train_lora(config, train_samples)


def test_no_samples_is_invalid_input(tiny_base: Path, tmp_path: Path) -> None:
    with pytest.raises(InvalidTrainingInput, match="No training samples"):
        train_lora(make_train_config(tiny_base, tmp_path), [])


def test_an_unreadable_image_is_invalid_input(
    tiny_base: Path, train_samples: list, tmp_path: Path
) -> None:
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"this is not a png")
    samples = [*train_samples, TrainSample(str(broken), "broken")]
    with pytest.raises(
        InvalidTrainingInput, match="Cannot read training image .*broken.png"
    ):
        train_lora(make_train_config(tiny_base, tmp_path / "out"), samples)
    missing = [TrainSample(str(tmp_path / "gone.jpg"), "gone")]
    with pytest.raises(InvalidTrainingInput, match="gone.jpg"):
        train_lora(make_train_config(tiny_base, tmp_path / "out"), missing)


def test_a_bad_config_is_invalid_input(
    tiny_base: Path, train_samples: list, tmp_path: Path
) -> None:
    config = make_train_config(
        tiny_base, tmp_path, resolution=60, mixed_precision="fp8"
    )
    with pytest.raises(InvalidTrainingInput) as raised:
        train_lora(config, train_samples)
    assert "resolution must be a positive multiple of 8" in str(raised.value)
    assert "mixed_precision must be one of" in str(raised.value)


def test_checkpoints_of_a_different_run_are_not_resumed(
    reference_run: Any, train_samples: list
) -> None:
    config, _, _, _ = reference_run
    with pytest.raises(
        InvalidTrainingInput, match=r"different run \(differs in: rank\)"
    ):
        train_lora(replace(config, rank=8), train_samples)


def write_shaped_images(folder: Path, sizes: list[tuple[int, int]]) -> list[Path]:
    """Blocky PNGs of the given (width, height)."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    paths = []
    for i, (width, height) in enumerate(sizes):
        blocks = rng.integers(0, 256, size=(height // 8, width // 8, 3), dtype=np.uint8)
        path = folder / f"shaped-{i}.png"
        Image.fromarray(np.kron(blocks, np.ones((8, 8, 1), dtype=np.uint8))).save(path)
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def mixed_samples(tmp_path_factory: Any) -> list[TrainSample]:
    """Two 2:3 portraits (96x144) and two squares: two buckets at 64 px, step 8."""
    sizes = [(96, 144), (64, 64), (96, 144), (64, 64)]
    paths = write_shaped_images(tmp_path_factory.mktemp("ml-mixed"), sizes)
    return [
        TrainSample(str(p), f"tag{i}, blocks, pattern") for i, p in enumerate(paths)
    ]


@pytest.fixture
def batches_seen(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every batch the trainer draws (the real BatchSampler, watched)."""
    from training.ml.dataset import BatchSampler

    seen: list[Any] = []
    draw = BatchSampler.next_batch

    def watched(self: Any) -> Any:
        batch = draw(self)
        seen.append(batch)
        return batch

    monkeypatch.setattr(BatchSampler, "next_batch", watched)
    return seen


def bucket_config(base: Path, output: Path, **overrides: Any) -> Any:
    return make_train_config(
        base,
        output,
        bucket_step=8,
        batch_size=2,
        shuffle_tags=True,
        caption_dropout=0.2,
        **overrides,
    )


def test_a_portrait_trains_at_a_portrait_bucket_uncropped(
    tiny_base: Path, mixed_samples: list, tmp_path: Path, batches_seen: list
) -> None:
    config = bucket_config(tiny_base, tmp_path, steps=2, checkpoint_every=0)
    result = train_lora(config, mixed_samples)
    shapes = {tuple(b.latents.shape) for b in batches_seen}
    # 48x72 px (2:3, the whole 96x144 image halved) and 64x64 px, in latents
    # (the tiny VAE downsamples by 2).
    assert shapes == {(2, 4, 36, 24), (2, 4, 32, 32)}
    portrait = [b for b in batches_seen if b.latents.shape[2:] == (36, 24)]
    assert portrait, "no batch drew from the 2:3 bucket"
    for size in portrait[0].sizes:
        assert size.original == (144, 96)
        assert size.crop_top_left == (0, 0)
        assert size.target == (72, 48)
    info = json.loads(result.metadata["ss_bucket_info"])
    resolutions = sorted(b["resolution"] for b in info["buckets"].values())
    assert resolutions == [[48, 72], [64, 64]]


def test_resume_keeps_bucket_order_captions_and_rng(
    tiny_base: Path, mixed_samples: list, tmp_path: Path, batches_seen: list
) -> None:
    # The text encoder trained too: its LoRA and optimizer state resume as well.
    whole_config = bucket_config(tiny_base, tmp_path / "whole", train_text_encoder=True)
    whole = train_lora(whole_config, mixed_samples)
    uninterrupted = [(tuple(b.latents.shape), b.captions) for b in batches_seen]
    batches_seen.clear()

    config = replace(whole_config, output_dir=str(tmp_path / "split"))
    with pytest.raises(Crash):  # at step 3, after the checkpoint at step 2
        train_lora(config, mixed_samples, on_step=raise_at(3, []))
    crashed = [(tuple(b.latents.shape), b.captions) for b in batches_seen]
    batches_seen.clear()
    resumed = train_lora(config, mixed_samples)
    assert resumed.resumed_from_step == 2
    after = [(tuple(b.latents.shape), b.captions) for b in batches_seen]
    # The same buckets in the same order, the same shuffled/dropped captions.
    assert crashed == uninterrupted[:3]
    assert after == uninterrupted[2:]
    assert len({shape for shape, _ in uninterrupted}) == 2
    assert any(k.startswith("lora_te_") for k in lora_tensors(whole.lora_path))
    ours, theirs = lora_tensors(resumed.lora_path), lora_tensors(whole.lora_path)
    assert ours.keys() == theirs.keys()
    assert all(torch_equal(ours[k], theirs[k]) for k in ours)


def torch_equal(a: Any, b: Any) -> bool:
    import torch

    return torch.equal(a, b)


def test_every_checkpoint_leaves_a_snapshot_with_samples_and_validation_loss(
    tiny_base: Path, train_samples: list, tmp_path: Path
) -> None:
    from training.ml.snapshots import list_snapshots

    lines: list[str] = []
    saved: list[tuple[int, str]] = []
    prompts = ("zxq a cat", "zxq a dog")
    config = make_train_config(
        tiny_base, tmp_path, sample_prompts=prompts, sample_steps=1, sample_seed=5
    )
    result = train_lora(
        config,
        train_samples[:4],
        validation_samples=train_samples[4:],
        on_checkpoint=lambda step, folder: saved.append((step, folder)),
        log=lines.append,
    )
    snapshots = list_snapshots(tmp_path)
    assert [s.step for s in snapshots] == [2, 4]
    assert saved == [(s.step, str(s.folder)) for s in snapshots]
    for snapshot in snapshots:
        assert [p.name for p in snapshot.sample_paths] == [
            "sample-00.png",
            "sample-01.png",
        ]
        assert snapshot.info["prompts"] == list(prompts)
        assert snapshot.info["seeds"] == [5, 6]
        assert math.isfinite(snapshot.loss) and snapshot.loss > 0
        assert math.isfinite(snapshot.validation_loss) and snapshot.validation_loss > 0
        assert snapshot.lora_path.is_file()
    # The step-4 snapshot's LoRA is the final one; step 2's is an earlier state.
    final = lora_tensors(str(snapshots[1].lora_path))
    assert all(final[k].equal(v) for k, v in lora_tensors(result.lora_path).items())
    early = lora_tensors(str(snapshots[0].lora_path))
    assert any(not early[k].equal(final[k]) for k in final)
    assert result.sample_paths == [str(p) for p in snapshots[1].sample_paths]
    assert [line for line in lines if "validation loss" in line] == [
        f"step {s.step} validation loss {s.validation_loss:.4f}" for s in snapshots
    ]


TRANSFORMER_MODULES = (
    "proj_in",
    "proj_out",
    *(f"transformer_blocks.0.attn{n}.{p}" for n in (1, 2) for p in ("to_q", "to_k")),
    *(
        f"transformer_blocks.0.attn{n}.{p}"
        for n in (1, 2)
        for p in ("to_v", "to_out.0")
    ),
    "transformer_blocks.0.ff.net.0.proj",
    "transformer_blocks.0.ff.net.2",
)


def test_the_default_lora_covers_every_transformer_module(
    reference_run: Any,
) -> None:
    """lora_targets "transformer" (kohya's set): 12 modules in each of the tiny
    UNet's own transformer blocks, nothing else."""
    from diffusers import UNet2DConditionModel

    config, result, _, _ = reference_run
    unet = UNet2DConditionModel.from_pretrained(config.base_model, subfolder="unet")
    transformers = [
        name
        for name, module in unet.named_modules()
        if type(module).__name__ == "Transformer2DModel"
    ]
    expected = {
        "lora_unet_" + f"{block}.{sub}".replace(".", "_")
        for block in transformers
        for sub in TRANSFORMER_MODULES
    }
    keys = lora_tensors(result.lora_path).keys()
    modules = {k.removesuffix(".lora_down.weight") for k in keys if "lora_down" in k}
    assert len(transformers) == 4  # down 1, mid 1, up 2 in the tiny UNet
    assert modules == expected
    assert result.module_counts == {"unet": 48}
    assert result.family == "sd1"
    assert result.metadata["lora_targets"] == "transformer"


def test_the_file_carries_sd_scripts_metadata_as_strings(reference_run: Any) -> None:
    from training.ml.kohya import read_lora_metadata

    config, result, _, _ = reference_run
    meta = read_lora_metadata(result.lora_path)
    assert meta == result.metadata
    assert all(isinstance(v, str) for v in meta.values())
    assert {
        k: meta[k]
        for k in (
            "ss_network_module",
            "ss_network_dim",
            "ss_network_alpha",
            "ss_base_model_version",
            "ss_resolution",
            "ss_num_train_images",
            "ss_steps",
            "ss_learning_rate",
            "ss_lr_scheduler",
            "ss_shuffle_caption",
            "ss_enable_bucket",
            "family",
        )
    } == {
        "ss_network_module": "networks.lora",
        "ss_network_dim": "4",
        "ss_network_alpha": "4.0",
        "ss_base_model_version": "sd_v1",
        "ss_resolution": "(64, 64)",
        "ss_num_train_images": "6",
        "ss_steps": "4",
        "ss_learning_rate": "0.001",
        "ss_lr_scheduler": "constant_with_warmup",
        "ss_shuffle_caption": "False",
        "ss_enable_bucket": "True",
        "family": "sd1",
    }
    tags = json.loads(meta["ss_tag_frequency"])
    assert tags == {"dataset": {f"a blocky picture number {i}": 1 for i in range(6)}}
    assert json.loads(meta["ss_bucket_info"])["buckets"]
    assert meta["lora_targets"] == config.lora_targets == "transformer"
