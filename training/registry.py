"""The LoRA registry: files trained here or imported, stored by content hash.

A LoRA file lives in storage at `loras/<sha256>.safetensors`, so the same bytes
are stored once and a re-delivered task writes nothing new. Files are checked
by reading the safetensors header (tensor names, shapes, metadata) without
torch, so importing from the web process stays light: the key and shape rules
are training.ml.kohya's, which A1111, ComfyUI and diffusers all accept.
"""

from __future__ import annotations

import hashlib
import json
import logging
import struct
import tempfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from django.core.files import File
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction

from imagineer_project.errors import Invalid, NotFound
from imagineer_project.permissions import person
from training.ml.config import TrainingError
from training.ml.kohya import kohya_key_problems, lora_family_of
from training.models import Lora, TrainingRun
from training.paths import base_model_name

if TYPE_CHECKING:
    from django.contrib.auth.models import User

logger = logging.getLogger(__name__)

MAX_HEADER_BYTES = 100 * 1024 * 1024  # safetensors' own limit
WEIGHT_RANGE = (-4.0, 4.0)


class LoraInvalid(Invalid):
    """A file or request the registry refuses; the message says why, and
    `field` which input it is about (the file, unless a subclass says)."""

    field = "file"


class LoraNameTaken(LoraInvalid):
    """The name is missing or already registered."""

    field = "name"


def lora_key(sha256: str) -> str:
    return f"loras/{sha256}.safetensors"


# --- reading files -------------------------------------------------------------------


@dataclass(frozen=True)
class TensorInfo:
    """A tensor as the header describes it: enough for the kohya key rules."""

    dtype: str
    shape: tuple[int, ...]

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def numel(self) -> int:
        count = 1
        for size in self.shape:
            count *= size
        return count


@dataclass(frozen=True)
class LoraFileInfo:
    tensors: dict[str, TensorInfo]
    metadata: dict[str, str]


def read_safetensors_header(fh: BinaryIO, size: int) -> LoraFileInfo:
    """The tensors and metadata of a safetensors file; LoraInvalid when it is not one.

    The format: an 8-byte little-endian header length, a JSON header mapping
    names to {dtype, shape, data_offsets} (plus "__metadata__", strings only),
    then the tensor bytes, which must fit in the file.
    """
    not_ours = "Not a .safetensors file"
    head = fh.read(8)
    if len(head) < 8:
        raise LoraInvalid(f"{not_ours}: it is too short.")
    length = struct.unpack("<Q", head)[0]
    if not 2 <= length <= min(MAX_HEADER_BYTES, size - 8):
        raise LoraInvalid(f"{not_ours}: its header length is impossible.")
    try:
        header = json.loads(fh.read(length))
    except (UnicodeDecodeError, ValueError) as exc:
        raise LoraInvalid(f"{not_ours}: its header is not JSON.") from exc
    if not isinstance(header, dict):
        raise LoraInvalid(f"{not_ours}: its header is not a JSON object.")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(
        isinstance(v, str) for v in metadata.values()
    ):
        raise LoraInvalid(f"{not_ours}: its metadata must map names to strings.")
    data_size = size - 8 - length
    tensors = {
        name: _tensor_info(name, entry, data_size) for name, entry in header.items()
    }
    return LoraFileInfo(tensors=tensors, metadata=metadata)


def _tensor_info(name: str, entry: Any, data_size: int) -> TensorInfo:
    try:
        dtype, shape, (start, end) = (
            entry["dtype"],
            entry["shape"],
            entry["data_offsets"],
        )
        valid = (
            isinstance(dtype, str)
            and all(isinstance(n, int) and n >= 0 for n in shape)
            and 0 <= start <= end <= data_size
        )
    except (KeyError, TypeError, ValueError):
        valid = False
    if not valid:
        raise LoraInvalid(
            f"Not a .safetensors file: tensor {name!r} is described wrongly or "
            "lies outside the file (truncated?)."
        )
    return TensorInfo(dtype=dtype, shape=tuple(shape))


def lora_file_check(path: Path) -> LoraFileInfo:
    """Read and check a LoRA file; LoraInvalid says what is wrong with it.

    SD 1.x/2.x files (lora_unet_, lora_te_), SDXL files (lora_te1_, lora_te2_)
    and LoCon files (4-D conv lora_down/lora_up) all pass the same key rules.
    """
    with path.open("rb") as fh:
        info = read_safetensors_header(fh, path.stat().st_size)
    problems = kohya_key_problems(info.tensors)
    if problems:
        shown = "; ".join(problems[:5])
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise LoraInvalid(
            "Not a kohya-format LoRA (keys lora_unet_…, lora_te_… or lora_te1_…/"
            f"lora_te2_… with lora_down, lora_up and alpha): {shown}{more}"
        )
    return info


def _rank(info: LoraFileInfo) -> int | None:
    """The LoRA's rank: its metadata's, else the most common rank of its
    linear (2-D) modules; a LoCon file's conv modules may have another
    (`conv_dim`), which ss_network_dim does not describe either."""
    dim = info.metadata.get("ss_network_dim") or info.metadata.get("rank")
    if dim and dim.isdigit():
        return int(dim)
    downs = [t for k, t in info.tensors.items() if k.endswith(".lora_down.weight")]
    ranks = [t.shape[0] for t in downs if t.ndim == 2] or [t.shape[0] for t in downs]
    return Counter(ranks).most_common(1)[0][0] if ranks else None


def _alpha(info: LoraFileInfo) -> float | None:
    for key in ("ss_network_alpha", "alpha"):
        try:
            return float(info.metadata[key])
        except (KeyError, ValueError):
            continue
    return None


def lora_family(info: LoraFileInfo) -> str:
    """The model family a LoRA file was trained on, "" when it does not say
    (training.ml.kohya.lora_family_of's rules, over the header read here)."""
    shapes = {key: tensor.shape for key, tensor in info.tensors.items()}
    return lora_family_of(info.metadata, shapes) or ""


def base_model_family(base_model: str) -> str:
    """The family of a base model (read from its config files, never loaded);
    "" when it cannot be told: a hub id not in the local cache, a folder that
    is not a Stable Diffusion pipeline."""
    from training.ml.family import detect_family

    if not base_model.strip():
        return ""
    try:
        return detect_family(base_model)
    except (TrainingError, OSError, ValueError) as exc:
        logger.info("No family for base model %s: %s", base_model_name(base_model), exc)
        return ""


def run_family(run: TrainingRun) -> str:
    """The family a run trains: what its manifest recorded, else its base
    model's."""
    recorded = (run.manifest or {}).get("family", "")
    if recorded in Lora.Family.values:
        return recorded
    return base_model_family(run.base_model)


# --- storing -------------------------------------------------------------------------


def _copy_hashing(source: BinaryIO, folder: Path) -> tuple[Path, str]:
    """Copy `source` into a temporary file in `folder`; return it and its sha256."""
    digest = hashlib.sha256()
    with tempfile.NamedTemporaryFile(
        dir=folder, suffix=".safetensors", delete=False
    ) as out:
        while chunk := source.read(1 << 20):
            digest.update(chunk)
            out.write(chunk)
    return Path(out.name), digest.hexdigest()


def _store(path: Path, sha256: str) -> str:
    """Put the file in storage under its content key (once) and return the key."""
    key = lora_key(sha256)
    if not default_storage.exists(key):
        with path.open("rb") as fh:
            default_storage.save(key, File(fh, name=key))
    return key


def _unique_name(name: str, fallback_suffix: str) -> str:
    name = name.strip()[:200]
    if not Lora.objects.filter(name=name).exists():
        return name
    return f"{name[: 200 - len(fallback_suffix) - 1]} {fallback_suffix}"


# --- services ------------------------------------------------------------------------


def lora_import(
    *,
    file: BinaryIO | Path | str,
    name: str,
    trigger_words: Sequence[str] = (),
    default_weight: float = 0.8,
    base_model: str = "",
    created_by: User | None = None,
) -> Lora:
    """Register an external kohya-format .safetensors LoRA under `name`.

    `file` is a path or an open binary file (an upload). Trigger words and the
    base model default to what the file's metadata says. Raises LoraInvalid for
    a taken name, a weight outside -4..4, a file that is not a kohya LoRA, or
    bytes already registered (naming the LoRA that has them).
    """
    name = name.strip()
    if not name:
        raise LoraNameTaken("A LoRA needs a name.")
    if Lora.objects.filter(name=name).exists():
        raise LoraNameTaken(f"A LoRA named {name!r} is already registered.")
    if not WEIGHT_RANGE[0] <= default_weight <= WEIGHT_RANGE[1]:
        raise LoraInvalid(
            f"The default weight must be between {WEIGHT_RANGE[0]} and "
            f"{WEIGHT_RANGE[1]} (got {default_weight})."
        )
    with tempfile.TemporaryDirectory(prefix="lora-import-") as scratch:
        if isinstance(file, (str, Path)):
            with Path(file).open("rb") as fh:
                path, sha256 = _copy_hashing(fh, Path(scratch))
        else:
            if hasattr(file, "seek"):
                file.seek(0)
            path, sha256 = _copy_hashing(file, Path(scratch))
        info = lora_file_check(path)
        same = Lora.objects.filter(sha256=sha256).first()
        if same is not None:
            raise LoraInvalid(f"This file is already registered as {same.name!r}.")
        key = _store(path, sha256)
        size = path.stat().st_size
    words = [w.strip() for w in trigger_words if w.strip()] or [
        w for w in [info.metadata.get("trigger_word", "").strip()] if w
    ]
    try:
        with transaction.atomic():
            lora = Lora.objects.create(
                name=name[:200],
                file=key,
                sha256=sha256,
                size=size,
                trigger_words=words,
                default_weight=default_weight,
                # Named as a run names it: a file made elsewhere may hold a path.
                base_model=base_model_name(
                    base_model.strip() or info.metadata.get("base_model", "")
                )[:500],
                family=lora_family(info),
                rank=_rank(info),
                alpha=_alpha(info),
                metadata=info.metadata,
                created_by=person(created_by),
            )
    except IntegrityError:
        # A concurrent import took the name or registered the same bytes.
        same = Lora.objects.filter(sha256=sha256).first()
        if same is not None:
            raise LoraInvalid(
                f"This file is already registered as {same.name!r}."
            ) from None
        raise LoraNameTaken(f"A LoRA named {name!r} is already registered.") from None
    logger.info("Imported LoRA %s (%s)", lora.name, sha256[:12])
    return lora


def lora_register_from_run(
    *, run: TrainingRun, lora_path: Path, step: int | None = None
) -> Lora:
    """Register a LoRA a run wrote: its final one (`step` None) or the snapshot
    of checkpoint `step` ("use step 1,200"). Once per (run, step), however
    often this is called; the same bytes are one LoRA whoever registers them.

    The final LoRA takes the run's name (with "(run #id)" added when another
    LoRA has it), a checkpoint's "<name> step N"; the trigger word is the
    dataset's, the family the run's (else the file's).
    """
    path = Path(lora_path)
    info = lora_file_check(path)
    source_step = step if step is not None else _final_step(run, info)
    existing = Lora.objects.filter(source_run=run, source_step=source_step).first()
    if existing is not None:
        return existing
    with path.open("rb") as fh:
        sha256 = hashlib.file_digest(fh, "sha256").hexdigest()
    same = Lora.objects.filter(sha256=sha256).first()
    if same is not None:
        # The same bytes are one LoRA (lora.sha256 is unique): a run that
        # trained exactly what another did, an imported copy, or the final
        # LoRA and its last checkpoint's snapshot.
        logger.info("Training run %s made the same file as LoRA %s", run.pk, same)
        return same
    key = _store(path, sha256)
    trigger = run.dataset.trigger_word.strip()
    name = run.name or f"run-{run.pk}"
    if step is not None:
        name = f"{name[:180]} step {step}"
    fields = {
        "name": _unique_name(name, f"(run #{run.pk})"),
        "file": key,
        "sha256": sha256,
        "size": path.stat().st_size,
        "trigger_words": [trigger] if trigger else [],
        "base_model": base_model_name(run.base_model),
        "family": run_family(run) or lora_family(info),
        "rank": run.config.get("rank") or _rank(info),
        "alpha": run.config.get("alpha") or _alpha(info),
        "metadata": info.metadata,
        # A checkpoint's samples are the run page's grid, not an album.
        "sample_album": run.sample_album if step is None else None,
        "created_by": run.created_by,
    }
    try:
        with transaction.atomic():
            lora = Lora.objects.create(
                source_run=run, source_step=source_step, **fields
            )
    except IntegrityError:
        # Another delivery or click registered it first (lora_one_per_run_step),
        # or a concurrent one the same bytes.
        return Lora.objects.filter(
            source_run=run, source_step=source_step
        ).first() or Lora.objects.get(sha256=sha256)
    logger.info("Registered LoRA %s from run %s step %s", lora, run.pk, source_step)
    return lora


def _final_step(run: TrainingRun, info: LoraFileInfo) -> int | None:
    """The step a run's final LoRA was saved at: its metadata's `ss_steps`,
    else the run's configured steps."""
    steps = info.metadata.get("ss_steps", "").strip()
    if steps.isdigit():
        return int(steps)
    configured = run.config.get("steps")
    return configured if isinstance(configured, int) else None


def lora_update(
    *,
    lora: Lora,
    name: str | None = None,
    trigger_words: Sequence[str] | None = None,
    default_weight: float | None = None,
) -> Lora:
    """Rename a LoRA or change its trigger words or default weight."""
    if name is not None:
        name = name.strip()
        if not name:
            raise LoraNameTaken("A LoRA needs a name.")
        if Lora.objects.filter(name=name).exclude(pk=lora.pk).exists():
            raise LoraNameTaken(f"A LoRA named {name!r} is already registered.")
        lora.name = name[:200]
    if trigger_words is not None:
        lora.trigger_words = [w.strip() for w in trigger_words if w.strip()]
    if default_weight is not None:
        if not WEIGHT_RANGE[0] <= default_weight <= WEIGHT_RANGE[1]:
            raise LoraInvalid("The default weight must be between -4 and 4.")
        lora.default_weight = default_weight
    lora.save()
    return lora


def lora_delete(*, lora: Lora) -> None:
    """Delete the registration, and the file unless another LoRA has the same bytes."""
    key = lora.file.name
    lora.delete()
    if key and not Lora.objects.filter(file=key).exists():
        try:
            default_storage.delete(key)
        except OSError:
            logger.warning("Could not delete %s", key)


def lora_open(lora: Lora) -> BinaryIO:
    """The stored file, opened for reading (local disk or S3 alike)."""
    return default_storage.open(lora.file.name, "rb")


class CheckpointMissing(NotFound):
    """No finished snapshot of that step (never written, or the run's work
    dir was deleted)."""


def lora_register_checkpoint(*, run: TrainingRun, step: int) -> Lora:
    """Register the LoRA of checkpoint `step` of `run` ("use step N"); asking
    again finds the same LoRA. CheckpointMissing names the steps there are."""
    from training.selectors import run_snapshots

    snapshots = run_snapshots(run)
    snapshot = next((s for s in snapshots if s.step == step), None)
    if snapshot is None or not snapshot.lora_path.is_file():
        steps = ", ".join(str(s.step) for s in snapshots) or "none"
        raise CheckpointMissing(
            f"Training run {run.pk} has no checkpoint at step {step} "
            f"(checkpoints: {steps})."
        )
    return lora_register_from_run(run=run, lora_path=snapshot.lora_path, step=step)
