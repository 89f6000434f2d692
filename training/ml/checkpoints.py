"""Training checkpoints: `<output_dir>/checkpoints/step-000500/`, written atomically.

Each checkpoint folder holds
  - `lora.safetensors`: the LoRA so far (UNet and text encoders), in kohya
    format (usable as is),
  - `training_state.pt`: optimizer, LR scheduler, grad scaler and RNG states,
    the batch sampler's state (the epoch's bucket-by-bucket queue and its
    generator), all loadable with `weights_only=True`,
  - `checkpoint.json`: step, loss and the run's fingerprint (config, network
    and bucket layout), written last.
The lasting per-step record people choose between (samples, losses) is the
snapshot (training.ml.snapshots); only the newest `KEEP` checkpoints stay.
A checkpoint is built in a `.tmp-*` folder and renamed into place, so a folder
named `step-*` with a `checkpoint.json` is always complete.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from training.ml.base import fsync_dir

logger = logging.getLogger(__name__)

KEEP = 3
LORA_FILE = "lora.safetensors"
STATE_FILE = "training_state.pt"
INFO_FILE = "checkpoint.json"
_NAME = re.compile(r"step-(\d+)")


@dataclass(frozen=True)
class Checkpoint:
    step: int
    path: Path

    def info(self) -> dict[str, Any]:
        return json.loads((self.path / INFO_FILE).read_text())


def checkpoints_root(output_dir: str | Path) -> Path:
    return Path(output_dir) / "checkpoints"


def step_folders(root: Path, marker: str) -> list[tuple[int, Path]]:
    """(step, folder) of each `step-NNNNNN` folder under `root` that holds the
    file `marker` (written last, so the folder is complete), oldest first."""
    if not root.is_dir():
        return []
    found = []
    for child in root.iterdir():
        match = _NAME.fullmatch(child.name)
        if match and (child / marker).is_file():
            found.append((int(match.group(1)), child))
    return sorted(found)


def list_checkpoints(root: Path) -> list[Checkpoint]:
    """Complete checkpoints under `root`, oldest first."""
    return [Checkpoint(step, folder) for step, folder in step_folders(root, INFO_FILE)]


def latest_checkpoint(root: Path) -> Checkpoint | None:
    found = list_checkpoints(root)
    return found[-1] if found else None


def remove_leftovers(root: Path) -> None:
    """Delete temporary folders a crashed run left behind."""
    if root.is_dir():
        for child in root.iterdir():
            if child.name.startswith(".tmp-"):
                shutil.rmtree(child, ignore_errors=True)


def save_checkpoint(
    root: Path,
    step: int,
    *,
    write_lora: Callable[[Path], None],
    training_state: dict[str, Any],
    info: dict[str, Any],
    keep: int = KEEP,
) -> Path:
    """Write checkpoint `step` atomically, then drop all but the newest `keep`.

    `write_lora(path)` writes the LoRA file; it is a callback so the caller keeps
    the format (and its metadata) in one place.
    """
    import torch

    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{step:06d}"
    scratch = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}-", dir=root))
    try:
        write_lora(scratch / LORA_FILE)
        torch.save(training_state, scratch / STATE_FILE)
        (scratch / INFO_FILE).write_text(json.dumps({**info, "step": step}, indent=2))
        for name in (LORA_FILE, STATE_FILE, INFO_FILE):
            _fsync_file(scratch / name)
        if final.exists():  # a re-run reached the same step again: replace it
            aside = root / f".tmp-old-{final.name}"
            final.replace(aside)
            shutil.rmtree(aside, ignore_errors=True)
        scratch.replace(final)
        fsync_dir(root)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    for old in list_checkpoints(root)[:-keep] if keep > 0 else []:
        shutil.rmtree(old.path, ignore_errors=True)
    logger.info("Saved checkpoint %s", final)
    return final


def load_training_state(checkpoint: Checkpoint) -> dict[str, Any]:
    import torch

    return torch.load(
        checkpoint.path / STATE_FILE, map_location="cpu", weights_only=True
    )


def _fsync_file(path: Path) -> None:
    with path.open("rb") as handle:
        os.fsync(handle.fileno())
