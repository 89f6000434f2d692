"""What a run keeps of each checkpoint for people to choose between.

Resumable checkpoints (training.ml.checkpoints) hold optimizer state and only
the newest few are kept. A snapshot is the small, lasting part of a checkpoint:
the LoRA as it was at that step, the sample images rendered from it (fixed
prompts and seeds, the same at every step, so a grid of step x prompt shows
where the LoRA began to overfit) and the step's losses. Every snapshot stays
until the run's work folder is deleted, so any step's LoRA can be registered.

Layout, under `<output_dir>/snapshots/step-000500/`:
  - `lora.safetensors`: the LoRA at that step (kohya format, with metadata),
  - `samples/sample-00.png`, ...: one image per sample prompt,
  - `snapshot.json`: step, loss, validation_loss (null without validation
    images), prompts and seeds, written last; a folder without it is unfinished.
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from training.ml.checkpoints import step_folders

LORA_FILE = "lora.safetensors"
INFO_FILE = "snapshot.json"
SAMPLES = "samples"
_NAME = re.compile(r"step-(\d+)")


@dataclass(frozen=True)
class Snapshot:
    step: int
    folder: Path
    info: dict[str, Any]

    @property
    def lora_path(self) -> Path:
        return self.folder / LORA_FILE

    @property
    def sample_paths(self) -> list[Path]:
        """The sample images, in prompt order (sample-00.png first)."""
        folder = self.folder / SAMPLES
        return sorted(folder.glob("sample-*.png")) if folder.is_dir() else []

    @property
    def loss(self) -> float | None:
        return _number(self.info.get("loss"))

    @property
    def validation_loss(self) -> float | None:
        return _number(self.info.get("validation_loss"))


def snapshots_root(output_dir: str | Path) -> Path:
    return Path(output_dir) / "snapshots"


def snapshot_folder(output_dir: str | Path, step: int) -> Path:
    """The folder of step `step`'s snapshot (created; a re-run reuses it)."""
    folder = snapshots_root(output_dir) / f"step-{step:06d}"
    (folder / SAMPLES).mkdir(parents=True, exist_ok=True)
    return folder


def sample_path(folder: Path, index: int) -> Path:
    return folder / SAMPLES / f"sample-{index:02d}.png"


def finish_snapshot(folder: Path, info: dict[str, Any]) -> Snapshot:
    """Write `snapshot.json` (atomically, last) and return the snapshot.

    Non-finite numbers are stored as null, so the file stays plain JSON.
    """
    step = int(_NAME.fullmatch(folder.name).group(1))  # type: ignore[union-attr]
    clean = {
        key: None if isinstance(v, float) and not math.isfinite(v) else v
        for key, v in {**info, "step": step}.items()
    }
    fd, scratch = tempfile.mkstemp(prefix=".snapshot-", dir=folder)
    with os.fdopen(fd, "w") as handle:
        json.dump(clean, handle, indent=2)
    Path(scratch).replace(folder / INFO_FILE)
    return Snapshot(step, folder, clean)


def list_snapshots(output_dir: str | Path) -> list[Snapshot]:
    """The finished snapshots of a run, oldest step first."""
    found = []
    for step, folder in step_folders(snapshots_root(output_dir), INFO_FILE):
        try:
            info = json.loads((folder / INFO_FILE).read_text())
        except (OSError, ValueError):
            continue
        found.append(Snapshot(step, folder, info))
    return found


def find_snapshot(output_dir: str | Path, step: int) -> Snapshot | None:
    return next((s for s in list_snapshots(output_dir) if s.step == step), None)


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) else None
