"""Device and precision choice (this machine has no GPU; CUDA paths are skipped)."""

from __future__ import annotations

import pytest

from training.ml.device import pick_device, pick_dtype


def test_cpu_is_always_available() -> None:
    assert pick_device("cpu") == "cpu"


def test_auto_picks_cpu_without_accelerators() -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert pick_device() == "cpu"


def test_an_absent_accelerator_is_an_error_not_a_silent_fallback() -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(ValueError, match="'cuda' was asked for but is not available"):
        pick_device("cuda")
    with pytest.raises(ValueError, match="Unknown device 'tpu'"):
        pick_device("tpu")


def test_mixed_precision_falls_back_to_float32_off_cuda_with_a_note() -> None:
    import torch

    assert pick_dtype("cpu", "no") == (torch.float32, "")
    dtype, note = pick_dtype("cpu", "bf16")
    assert dtype == torch.float32
    assert note == "bf16 mixed precision is CUDA-only; running in float32 on cpu."
    assert pick_dtype("mps", "fp16")[0] == torch.float32
    with pytest.raises(ValueError, match="mixed_precision must be"):
        pick_dtype("cpu", "int8")


def test_cuda_gets_the_asked_precision() -> None:
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs a GPU")
    assert pick_dtype("cuda", "fp16") == (torch.float16, "")
    if torch.cuda.is_bf16_supported():
        assert pick_dtype("cuda", "bf16") == (torch.bfloat16, "")
