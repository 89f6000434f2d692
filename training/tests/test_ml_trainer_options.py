"""The trainer's options: loss formulas with known numbers, optimizers and
schedules, and every option combination training the tiny model for real."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from training.ml.config import InvalidTrainingInput, TrainConfig, TrainSample
from training.ml.trainer import train_lora
from training.tests.conftest import make_train_config


def ddpm() -> Any:
    from diffusers import DDPMScheduler

    return DDPMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear"
    )


# --- loss.py: formulas against numbers worked out by hand -------------------


def test_min_snr_weights_follow_the_paper_for_epsilon_and_v() -> None:
    import torch

    from training.ml.loss import min_snr_weights

    snr = torch.tensor([0.5, 5.0, 20.0])
    # epsilon: min(snr, 5) / snr
    assert min_snr_weights(snr, 5.0, "epsilon").tolist() == pytest.approx(
        [1.0, 1.0, 0.25]
    )
    # v-prediction: min(snr, 5) / (snr + 1)
    assert min_snr_weights(snr, 5.0, "v_prediction").tolist() == pytest.approx(
        [0.5 / 1.5, 5.0 / 6.0, 5.0 / 21.0]
    )


def test_signal_to_noise_is_alpha_bar_over_its_complement() -> None:
    import torch

    from training.ml.loss import signal_to_noise

    scheduler = ddpm()
    t = torch.tensor([0, 500, 999])
    alpha_bar = scheduler.alphas_cumprod[t]
    expected = (alpha_bar / (1 - alpha_bar)).tolist()
    assert signal_to_noise(scheduler, t).tolist() == pytest.approx(expected)
    # Low noise has a high SNR: t=0 is far above gamma, t=999 far below.
    assert (
        signal_to_noise(scheduler, t)[0] > 100 > 0.01 > signal_to_noise(scheduler, t)[2]
    )


def test_diffusion_loss_weights_each_sample_by_min_snr_and_its_own_weight() -> None:
    import torch

    from training.ml.loss import LossOptions, diffusion_loss, signal_to_noise

    scheduler = ddpm()
    prediction = torch.zeros(2, 1, 1, 2)
    target = torch.tensor([[[[1.0, 3.0]]], [[[2.0, 2.0]]]])  # mse 5.0 and 4.0
    timesteps = torch.tensor([10, 900])
    weights = torch.tensor([1.0, 0.5])
    plain = diffusion_loss(
        prediction,
        target,
        scheduler=scheduler,
        timesteps=timesteps,
        weights=weights,
        options=LossOptions(),
    )
    assert plain.item() == pytest.approx((5.0 * 1.0 + 4.0 * 0.5) / 2)
    snr = signal_to_noise(scheduler, timesteps)
    gamma = 5.0
    weighted = diffusion_loss(
        prediction,
        target,
        scheduler=scheduler,
        timesteps=timesteps,
        weights=weights,
        options=LossOptions(min_snr_gamma=gamma),
    )
    snr_weights = [min(s, gamma) / s for s in snr.tolist()]
    expected = (5.0 * snr_weights[0] + 2.0 * snr_weights[1]) / 2
    assert weighted.item() == pytest.approx(expected)
    assert snr_weights[0] < 1.0 == snr_weights[1]  # only the low-noise step shrinks


def test_huber_loss_is_quadratic_near_zero_and_linear_far_out() -> None:
    import torch

    from training.ml.loss import per_sample_loss

    c = 0.1
    zero = torch.zeros(1, 1)
    small = per_sample_loss(torch.tensor([[0.01]]), zero, "huber", c).item()
    large = per_sample_loss(torch.tensor([[10.0]]), zero, "huber", c).item()
    assert small == pytest.approx(2 * c * (math.sqrt(0.01**2 + c**2) - c), rel=1e-4)
    assert small == pytest.approx(0.01**2, rel=0.01)  # ~ d^2 for |d| << c
    assert large == pytest.approx(2 * c * (math.sqrt(100 + c**2) - c), rel=1e-5)
    assert large < 10.0**2 / 40  # far below the squared error: outliers count less
    assert per_sample_loss(torch.tensor([[3.0]]), zero, "l2", c).item() == 9.0


def test_v_prediction_target_is_the_velocity() -> None:
    import torch

    from training.ml.loss import training_target

    scheduler = ddpm()
    latents, noise = torch.ones(1, 1, 1, 1), torch.full((1, 1, 1, 1), 2.0)
    t = torch.tensor([400])
    assert training_target(scheduler, latents, noise, t) is noise
    v_scheduler = type(scheduler).from_config(
        scheduler.config, prediction_type="v_prediction"
    )
    a = v_scheduler.alphas_cumprod[400]
    expected = a.sqrt() * 2.0 - (1 - a).sqrt() * 1.0  # sqrt(ab) eps - sqrt(1-ab) x0
    velocity = training_target(v_scheduler, latents, noise, t)
    assert velocity.item() == pytest.approx(expected.item())


def test_noise_offset_shifts_each_channel_by_one_shared_draw() -> None:
    import torch

    from training.ml.loss import draw_noise

    plain = draw_noise((2, 4, 8, 8), 0.0, torch.Generator().manual_seed(3))
    shifted = draw_noise((2, 4, 8, 8), 0.5, torch.Generator().manual_seed(3))
    offset = shifted - plain
    # Constant over each (sample, channel) plane, different between planes.
    assert torch.allclose(offset, offset[:, :, :1, :1].expand_as(offset))
    assert offset[:, :, 0, 0].unique().numel() == 8
    assert 0.0 < offset.abs().max().item() < 0.5 * 5


# --- optim.py ------------------------------------------------------------------


def scheduled_rates(name: str, **overrides: Any) -> list[float]:
    import torch

    from training.ml.optim import build_optimizer, build_scheduler

    config = TrainConfig(
        base_model="m",
        output_dir="o",
        steps=6,
        warmup_steps=2,
        learning_rate=1.0,
        lr_scheduler=name,
        **overrides,
    )
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = build_optimizer([{"params": [param], "lr": 1.0}], config, "cpu")
    schedule = build_scheduler(optimizer, config)
    rates = []
    for _ in range(config.steps):
        rates.append(round(schedule.get_last_lr()[0], 4))
        param.grad = torch.ones(1)
        optimizer.step()
        schedule.step()
    return rates


def test_schedules_warm_up_from_the_first_step_and_decay_to_the_last() -> None:
    assert scheduled_rates("constant") == [1.0] * 6
    assert scheduled_rates("constant_with_warmup") == [0.5, 1.0, 1.0, 1.0, 1.0, 1.0]
    assert scheduled_rates("linear") == [0.5, 1.0, 0.8, 0.6, 0.4, 0.2]
    cosine = scheduled_rates("cosine")
    assert cosine[:2] == [0.5, 1.0]
    assert cosine[2:] == sorted(cosine[2:], reverse=True) and cosine[-1] > 0
    restarts = scheduled_rates("cosine_with_restarts", lr_cycles=2)
    assert restarts[3] < restarts[4]  # the second cycle starts high again


def test_adamw8bit_on_the_cpu_is_a_clear_invalid_input() -> None:
    import torch

    from training.ml.optim import build_optimizer

    config = TrainConfig(base_model="m", output_dir="o", optimizer="adamw8bit")
    param = torch.nn.Parameter(torch.zeros(1))
    with pytest.raises(InvalidTrainingInput, match="AdamW 8-bit needs CUDA"):
        build_optimizer([{"params": [param], "lr": 1e-4}], config, "cpu")


def test_prodigy_uses_its_preset_and_the_groups_own_rates() -> None:
    import torch
    from prodigyopt import Prodigy

    from training.ml.optim import build_optimizer

    config = TrainConfig(base_model="m", output_dir="o", optimizer="prodigy")
    a, b = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    optimizer = build_optimizer(
        [{"params": [a], "lr": 1.0}, {"params": [b], "lr": 0.5}], config, "cpu"
    )
    assert isinstance(optimizer, Prodigy)
    assert [g["lr"] for g in optimizer.param_groups] == [1.0, 0.5]
    assert all(g["decouple"] and g["safeguard_warmup"] for g in optimizer.param_groups)


def test_prodigy_warns_when_given_adam_sized_rates() -> None:
    from training.ml.optim import prodigy_note

    def note(**options: Any) -> str:
        return prodigy_note(TrainConfig(base_model="m", output_dir="o", **options))

    assert note(optimizer="adamw", learning_rate=1e-4) == ""
    assert note(optimizer="prodigy", learning_rate=1.0) == ""
    assert "learning_rate 0.0001 will barely train" in note(
        optimizer="prodigy", learning_rate=1e-4
    )
    assert "text_encoder_lr 5e-05 will barely train" in note(
        optimizer="prodigy", learning_rate=1.0, train_text_encoder=True
    )


# --- every option trains the tiny model ------------------------------------------

OPTION_SETS = [
    {"optimizer": "adamw", "lr_scheduler": "constant", "loss_type": "l2"},
    {
        "optimizer": "prodigy",
        "learning_rate": 1.0,
        "lr_scheduler": "cosine",
        "loss_type": "huber",
        "huber_c": 0.2,
    },
    {
        "lr_scheduler": "cosine_with_restarts",
        "lr_cycles": 2,
        "min_snr_gamma": 5.0,
        "noise_offset": 0.1,
    },
    {"lr_scheduler": "linear", "loss_type": "huber", "min_snr_gamma": 1.0},
    {
        "lora_targets": "transformer+conv",
        "conv_rank": 2,
        "conv_alpha": 1.0,
        "train_text_encoder": True,
        "text_encoder_lr": 1e-4,
        "gradient_checkpointing": True,
    },
    {
        "lora_targets": "attention",
        "shuffle_tags": True,
        "keep_tokens": 1,
        "caption_dropout": 0.5,
        "bucketing": False,
        "center_crop": False,
        "compile_unet": True,  # a note and a no-op on the CPU
    },
]


@pytest.mark.parametrize("options", OPTION_SETS, ids=lambda o: "-".join(map(str, o)))
def test_every_option_set_trains_and_is_recorded(
    tiny_base: Path, train_samples: list, tmp_path: Path, options: dict[str, Any]
) -> None:
    from training.ml.kohya import kohya_key_problems

    lines: list[str] = []
    config = make_train_config(
        tiny_base,
        tmp_path,
        steps=2,
        warmup_steps=1,
        checkpoint_every=0,
        **options,
    )
    result = train_lora(config, train_samples[:4], log=lines.append)
    assert math.isfinite(result.final_loss) and result.final_loss > 0
    assert kohya_key_problems(result.lora_path) == []
    for name, value in options.items():
        written = repr(value) if type(value) is float else str(value)
        assert result.metadata[name] == written
    optimizer_class = {"adamw": "torch.optim.AdamW", "prodigy": "prodigyopt.Prodigy"}
    assert result.metadata["ss_optimizer"].startswith(optimizer_class[config.optimizer])
    assert result.metadata["ss_lr_scheduler"] == config.lr_scheduler
    if options.get("compile_unet"):
        assert any("compile_unet is ignored on cpu" in line for line in lines)


def test_adamw8bit_run_on_the_cpu_stops_before_training(
    tiny_base: Path, train_samples: list, tmp_path: Path
) -> None:
    config = make_train_config(tiny_base, tmp_path, optimizer="adamw8bit")
    with pytest.raises(InvalidTrainingInput, match="AdamW 8-bit needs CUDA"):
        train_lora(config, train_samples[:2])
    assert not (tmp_path / "lora.safetensors").exists()


def test_regularisation_images_join_with_their_weight(
    tiny_base: Path, train_samples: list, tmp_path: Path
) -> None:
    reg = [TrainSample(s.image_path, "a picture") for s in train_samples[4:]]
    config = make_train_config(
        tiny_base, tmp_path, steps=2, checkpoint_every=0, reg_weight=0.5
    )
    result = train_lora(config, train_samples[:4], reg_samples=reg)
    assert math.isfinite(result.final_loss)
    assert result.metadata["ss_num_reg_images"] == "2"
    assert result.metadata["reg_weight"] == "0.5"
    buckets = json.loads(result.metadata["ss_bucket_info"])["buckets"]
    assert sum(b["count"] for b in buckets.values()) == 6  # 4 training + 2 reg
