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


def _is_folder(path: Path) -> bool:
    """Whether `path` is a folder; a name the OS cannot even look up (too
    long, a NUL byte) is none."""
    try:
        return path.is_dir()
    except (OSError, ValueError):
        return False


def base_model_name(base_model: str) -> str:
    """A hub id as it is; a local folder by its path inside the data directory
    (IMAGINEER_VAR_DIR) when it lies there, else by its own name."""
    model = base_model.strip()
    if not model or not (_LOCAL.match(model) or _is_folder(Path(model))):
        return model
    path = Path(model).expanduser()
    try:
        return path.resolve().relative_to(Path(settings.VAR_DIR).resolve()).as_posix()
    except (OSError, ValueError):
        return PurePath(model.replace("\\", "/").rstrip("/")).name


def base_model_location(shown: str) -> str:
    """The folder a shown name stands for, so what a caller saw can be sent
    back: a configured base model (GENERATION_ or TRAINING_BASE_MODEL) by its
    shown name, a path inside the data directory when that folder exists
    there; anything else as it is (a hub id, a path)."""
    model = shown.strip()
    if not model or _LOCAL.match(model) or Path(model).is_absolute():
        return model
    for configured in (settings.GENERATION_BASE_MODEL, settings.TRAINING_BASE_MODEL):
        if configured and configured != model and base_model_name(configured) == model:
            return configured
    inside = Path(settings.VAR_DIR) / model
    return str(inside) if _is_folder(inside) else model


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
