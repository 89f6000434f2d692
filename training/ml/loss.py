"""The diffusion training loss: noise, target, per-sample weighting.

- Target by the noise scheduler's `prediction_type`: the noise (epsilon), the
  velocity (v_prediction, SD 2.x 768) or the clean latents (sample).
- Noise offset (Guttenberg's trick): each sample's noise gets a per-channel
  constant `offset * randn(b, c, 1, 1)` added, so the model can learn to
  shift overall brightness (very dark or light images).
- Min-SNR-gamma (Hang et al. 2023): a timestep's loss is weighted by
  min(SNR, gamma) / SNR for epsilon, min(SNR, gamma) / (SNR + 1) for
  v-prediction, which stops the easy low-noise steps dominating the gradient.
- `l2` (mean squared error) or `huber`: the pseudo-Huber loss
  2c * (sqrt(d^2 + c^2) - c), quadratic for small errors and linear for
  outliers.
- Per-sample weights (regularisation images count `reg_weight`).

Every random draw takes the run's CPU generator, so a run is reproducible on
any device and its stream can be checkpointed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")


@dataclass(frozen=True)
class LossOptions:
    loss_type: str = "l2"  # "l2" or "huber"
    huber_c: float = 0.1
    min_snr_gamma: float = 0.0  # 0: off
    noise_offset: float = 0.0

    @classmethod
    def of(cls, config: Any) -> LossOptions:
        return cls(
            config.loss_type,
            config.huber_c,
            config.min_snr_gamma,
            config.noise_offset,
        )


def draw_noise(
    shape: torch.Size | tuple[int, ...], offset: float, generator: torch.Generator
) -> torch.Tensor:
    """Gaussian noise of `shape` (on the CPU), plus a per-channel offset when asked.

    The offset is drawn only when it is non-zero, so runs without it keep the
    same random stream as before the option existed.
    """
    import torch

    noise = torch.randn(shape, generator=generator)
    if offset:
        noise += offset * torch.randn((shape[0], shape[1], 1, 1), generator=generator)
    return noise


def training_target(
    scheduler: Any,
    latents: torch.Tensor,
    noise: torch.Tensor,
    timesteps: torch.Tensor,
) -> torch.Tensor:
    """What the UNet should predict, by the scheduler's `prediction_type`."""
    prediction = scheduler.config.prediction_type
    if prediction == "epsilon":
        return noise
    if prediction == "v_prediction":
        return scheduler.get_velocity(latents, noise, timesteps)
    if prediction == "sample":
        return latents
    raise ValueError(f"Unsupported prediction_type {prediction!r}")


def signal_to_noise(scheduler: Any, timesteps: torch.Tensor) -> torch.Tensor:
    """SNR(t) = alpha_bar_t / (1 - alpha_bar_t), float32, on `timesteps`' device."""
    alphas = scheduler.alphas_cumprod.to(timesteps.device, dtype=_float32())
    alpha_bar = alphas[timesteps]
    return alpha_bar / (1.0 - alpha_bar)


def min_snr_weights(snr: torch.Tensor, gamma: float, prediction: str) -> torch.Tensor:
    """Min-SNR-gamma loss weights per timestep (see the module doc)."""
    clipped = snr.clamp(max=gamma)
    if prediction == "epsilon":
        return clipped / snr
    if prediction == "v_prediction":
        return clipped / (snr + 1.0)
    return clipped  # sample (x0) prediction: the paper's min(SNR, gamma)


def per_sample_loss(
    prediction: torch.Tensor, target: torch.Tensor, loss_type: str, huber_c: float
) -> torch.Tensor:
    """The loss of each sample, averaged over its channels and pixels: shape (b,)."""
    import torch

    diff = prediction.float() - target.float()
    if loss_type == "huber":
        elementwise = 2 * huber_c * (torch.sqrt(diff**2 + huber_c**2) - huber_c)
    elif loss_type == "l2":
        elementwise = diff**2
    else:
        raise ValueError(f"Unknown loss_type {loss_type!r}")
    return elementwise.mean(dim=tuple(range(1, diff.ndim)))


def diffusion_loss(
    prediction: torch.Tensor,
    target: torch.Tensor,
    *,
    scheduler: Any,
    timesteps: torch.Tensor,
    weights: torch.Tensor,
    options: LossOptions,
) -> torch.Tensor:
    """The batch's loss: per-sample loss x min-SNR weight x sample weight, meaned."""
    loss = per_sample_loss(prediction, target, options.loss_type, options.huber_c)
    loss = loss * weights.to(loss.device, dtype=loss.dtype)
    if options.min_snr_gamma:
        snr = signal_to_noise(scheduler, timesteps)
        kind = scheduler.config.prediction_type
        loss = loss * min_snr_weights(snr, options.min_snr_gamma, kind)
    return loss.mean()


def _float32() -> Any:
    import torch

    return torch.float32
