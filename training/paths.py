"""How a run names things on the gpu worker's disk in what it writes out (its
log, manifest, LoRA metadata and the API): never a filesystem path. A base
model is named by its name; a file by its path inside the run's work folder.
The ML code (training/ml/) still gets real paths; only what is shown changes."""

from __future__ import annotations

import re
from pathlib import Path, PurePath

from django.conf import settings

# A local folder rather than a hub id ("org/name"): absolute, home-relative,
# explicitly relative, or a Windows drive path.
_LOCAL = re.compile(r"^(?:[/~.\\]|[A-Za-z]:[/\\])")


def base_model_name(base_model: str) -> str:
    """A hub id as it is; a local folder by its path inside the data directory
    (IMAGINEER_VAR_DIR) when it lies there, else by its own name."""
    model = base_model.strip()
    if not model or not (_LOCAL.match(model) or Path(model).is_dir()):
        return model
    path = Path(model).expanduser()
    try:
        return path.resolve().relative_to(Path(settings.VAR_DIR).resolve()).as_posix()
    except (OSError, ValueError):
        return PurePath(model.replace("\\", "/").rstrip("/")).name


def without_paths(text: str, *, base_model: str = "") -> str:
    """`text` (a log line, an error) with the training work folder shown as
    nothing (`run-7/out/lora.safetensors`), the data directory likewise, and
    a local base model by its name."""
    local = base_model.strip()
    if local and base_model_name(local) != local:
        text = text.replace(local.rstrip("/\\"), base_model_name(local))
    for folder in (settings.TRAINING_WORK_DIR, settings.VAR_DIR):
        for shown in {str(folder), str(Path(folder).resolve())}:
            text = text.replace(shown.rstrip("/") + "/", "")
    return text
