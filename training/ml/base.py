"""Finding, checking, loading and fingerprinting a base Stable Diffusion model."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from importlib import metadata
from pathlib import Path
from typing import Any

from training.ml.config import InvalidTrainingInput

logger = logging.getLogger(__name__)

PIPELINE_CLASSES = ("StableDiffusionPipeline", "StableDiffusionXLPipeline")
COMPONENTS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
# The component folders each pipeline class needs.
CLASS_COMPONENTS = {
    "StableDiffusionPipeline": COMPONENTS,
    "StableDiffusionXLPipeline": (*COMPONENTS, "text_encoder_2", "tokenizer_2"),
}
WEIGHT_SUFFIXES = (".safetensors", ".bin")
LIBRARIES = ("torch", "diffusers", "peft", "transformers", "safetensors", "accelerate")

# (resolved path, ((relative path, size, mtime_ns), ...)) -> sha256, so a worker
# hashes a multi-gigabyte base model once per process, not once per run.
_hash_cache: dict[tuple[str, tuple[tuple[str, int, int], ...]], str] = {}


def library_versions() -> dict[str, str]:
    """Versions of the ML libraries, from package metadata (imports nothing)."""
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def is_local(base_model: str) -> bool:
    """A path, not a hub id: it exists, or it is spelled like a path.

    Hub ids are `name` or `owner/name`; anything absolute, relative-dotted,
    home-relative or with more than one slash is meant as a folder.
    """
    if Path(base_model).expanduser().exists():
        return True
    return base_model.startswith(("/", ".", "~")) or base_model.count("/") > 1


def local_model_folder(base_model: str) -> Path:
    """The checked folder of `base_model`; InvalidTrainingInput says what is wrong."""
    folder = Path(base_model).expanduser()
    if not folder.is_dir():
        raise InvalidTrainingInput(f"Base model folder {base_model!r} does not exist.")
    index = folder / "model_index.json"
    if not index.is_file():
        raise InvalidTrainingInput(
            f"Base model {base_model!r} is not a diffusers pipeline folder "
            "(no model_index.json). Single-file .safetensors/.ckpt checkpoints "
            "must be converted to the diffusers layout first."
        )
    try:
        class_name = json.loads(index.read_text()).get("_class_name")
    except (OSError, ValueError) as exc:
        raise InvalidTrainingInput(f"{index} is not readable JSON: {exc}") from exc
    if class_name not in PIPELINE_CLASSES:
        raise InvalidTrainingInput(
            f"Base model {base_model!r} is a {class_name}, not a Stable Diffusion "
            f"1.x/2.x or SDXL pipeline ({', '.join(PIPELINE_CLASSES)})."
        )
    missing = [c for c in CLASS_COMPONENTS[class_name] if not (folder / c).is_dir()]
    if missing:
        raise InvalidTrainingInput(
            f"Base model {base_model!r} lacks the component folders: "
            f"{', '.join(missing)}."
        )
    return folder


def load_pipeline(base_model: str, *, torch_dtype: Any = None) -> Any:
    """The base model's pipeline, loaded with clear errors: a
    StableDiffusionXLPipeline for SDXL, else a StableDiffusionPipeline (SD 1.x
    and 2.x) without safety checker.

    Hub ids load from the local cache only when HF_HUB_OFFLINE is set (always
    the case in this project's workers and tests).
    """
    import diffusers

    _no_progress_bars()
    if is_local(base_model):
        source: str | Path = local_model_folder(base_model)
        class_name = pipeline_class_name(source)
    else:
        source = base_model
        class_name = _cached_class_name(base_model)
    kwargs: dict[str, Any] = (
        {"add_watermarker": False}  # no invisible-watermark dependency
        if class_name == "StableDiffusionXLPipeline"
        else {"safety_checker": None, "requires_safety_checker": False}
    )
    if torch_dtype is not None and str(torch_dtype) != "torch.float32":
        kwargs[_dtype_keyword()] = torch_dtype
    try:
        pipe = getattr(diffusers, class_name).from_pretrained(source, **kwargs)
    except (OSError, ValueError) as exc:
        raise InvalidTrainingInput(
            f"Could not load base model {base_model!r}: {exc}"
        ) from exc
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _no_progress_bars() -> None:
    """diffusers and transformers draw tqdm bars while loading ("Loading
    pipeline components...", "Loading weights"): in a worker's log they are
    carriage-return noise on every model load. Progress is the run's, told
    through its checkpoints."""
    import diffusers.utils.logging
    import transformers.utils.logging

    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()


def pipeline_class_name(folder: Path) -> str:
    """model_index.json's `_class_name` ("" when unreadable)."""
    try:
        return str(json.loads((folder / "model_index.json").read_text())["_class_name"])
    except (OSError, ValueError, KeyError, TypeError):
        return ""


def _cached_class_name(base_model: str) -> str:
    """The pipeline class of a hub model's cached snapshot; the SD one when there
    is none (loading then fails with the hub's own message) or it is another."""
    folder = resolve_model_folder(base_model)
    name = pipeline_class_name(folder) if folder is not None else ""
    if name not in PIPELINE_CLASSES:
        if name:
            raise InvalidTrainingInput(
                f"Base model {base_model!r} is a {name}, not a Stable Diffusion "
                f"1.x/2.x or SDXL pipeline ({', '.join(PIPELINE_CLASSES)})."
            )
        return "StableDiffusionPipeline"
    return name


def _dtype_keyword() -> str:
    """diffusers renamed `torch_dtype` to `dtype` (and warns on the old name)."""
    try:
        from diffusers.utils.deprecation_utils import _resolve_dtype  # noqa: F401
    except ImportError:
        return "torch_dtype"
    return "dtype"


def resolve_model_folder(base_model: str) -> Path | None:
    """The local folder of `base_model`'s files: itself, or its hub cache snapshot."""
    if is_local(base_model):
        return Path(base_model).expanduser()
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(base_model, local_files_only=True))
    except Exception as exc:  # any hub error just means "not cached"
        logger.info("No local snapshot of %s to hash: %s", base_model, exc)
        return None


def hash_base_model(path: str | Path) -> str:
    """sha256 over the sorted relative paths and bytes of the folder's weight files.

    Configs are left out on purpose: a re-saved config with the same weights is
    the same model. A hub id is hashed through its cached snapshot; "" when
    there is none.
    """
    folder = resolve_model_folder(str(path))
    if folder is None or not folder.is_dir():
        return ""
    files = sorted(
        (f.relative_to(folder).as_posix(), f)
        for f in folder.rglob("*")
        if f.name.endswith(WEIGHT_SUFFIXES) and f.is_file()
    )
    stats = tuple((rel, f.stat().st_size, f.stat().st_mtime_ns) for rel, f in files)
    key = (str(folder.resolve()), stats)
    if key not in _hash_cache:
        digest = hashlib.sha256()
        for (rel, file), (_, size, _) in zip(files, stats, strict=True):
            # The size delimits each file, so names and bytes cannot run together.
            digest.update(f"{rel}\0{size}\0".encode())
            with file.open("rb") as handle:
                while chunk := handle.read(8 << 20):
                    digest.update(chunk)
        _hash_cache[key] = digest.hexdigest()
    return _hash_cache[key]


def fsync_dir(folder: Path) -> None:
    """Make a rename inside `folder` durable (no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
