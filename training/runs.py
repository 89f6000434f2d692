"""The body a training run runs on the gpu worker (training.services creates,
starts and cancels runs).

The body runs inside `run_execute` (the shared state machine). Everything a run
writes locally lives in TRAINING_WORK_DIR/run-<id>/: `data/` (the dataset's
files) and `out/` (checkpoints, the LoRA, samples). `out/` is the same folder on
every attempt, so an attempt after a crash resumes from the latest checkpoint
there (train_lora does this by itself). Outputs are registered idempotently:
one LoRA per run (a unique constraint), sample images by content hash.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import random
import shutil
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.utils import timezone

from albums.models import Album, SourceKind, Visibility
from albums.services import (
    album_get_or_create,
    album_update,
    image_ingest,
    image_update,
)
from imagineer_project.disk import disk_floor_check
from imagineer_project.runs import (
    RunCancelled,
    run_checkpoint,
)
from training.config import FIELDS, RUN_ONLY_FIELDS
from training.datasets.files import (
    caption_with_trigger,
    copy_atomically,
    dataset_materialize,
    item_suffix,
    open_item,
)
from training.datasets.services import album_training_items, item_repeats
from training.estimates import StepTimer
from training.ml.config import (
    InvalidTrainingInput,
    StepReport,
    TrainConfig,
    TrainResult,
    TrainSample,
)
from training.models import DatasetVersion, TrainingRun
from training.paths import base_model_name, without_paths
from training.registry import lora_register_from_run

if TYPE_CHECKING:
    from albums.models import Image

logger = logging.getLogger(__name__)

LOG_LINES = 200  # lines of log kept on the run row
CURVE_POINTS = 500  # at most this many (step, mean loss) points on the chart
CURVE_FLUSH_SECONDS = 2.0  # write the loss curve at most this often
SAMPLE_CAPTIONS = 2  # dataset captions used as sample prompts (plus the trigger)

StepCallback = Callable[[StepReport], None]


# --- the run body --------------------------------------------------------------------


def run_work_dir(run: TrainingRun) -> Path:
    return Path(settings.TRAINING_WORK_DIR) / f"run-{run.pk}"


def sample_prompts(dataset: DatasetVersion) -> list[str]:
    """Fixed prompts for a run's samples: the trigger word alone, then the first
    distinct captions of the dataset (led by the trigger word)."""
    trigger = dataset.trigger_word.strip()
    captions = dict.fromkeys(
        item["caption"].strip()
        for item in dataset.manifest.get("items", [])
        if item.get("caption", "").strip()
    )
    prompts = [trigger] if trigger else []
    prompts += [caption_with_trigger(c, trigger) for c in captions][:SAMPLE_CAPTIONS]
    return prompts


def training_run_execute(
    run: TrainingRun, *, on_step: StepCallback | None = None
) -> str:
    """The body of a training run (see run_execute); returns its final message.

    `on_step` hears every step report (tests stop or crash a run there). Training errors
    (NonFiniteLoss, OutOfMemory, InvalidTrainingInput) and DatasetInvalid
    propagate and fail the run; they are never retried.
    """
    tracker = _Tracker(run)
    try:
        return _train(run, tracker, on_step)
    except RunCancelled:
        tracker.stopped(f"Cancelled at step {run.progress_done}")
        raise
    except KeyboardInterrupt:  # the CLI's Ctrl-C, which it turns into a cancel
        tracker.stopped(f"Interrupted at step {run.progress_done}")
        raise
    except Exception as exc:
        tracker.stopped(f"Failed: {type(exc).__name__}: {exc}")
        _hide_paths(exc, run)
        raise


def _hide_paths(exc: Exception, run: TrainingRun) -> None:
    """The failure's message becomes the run's `error`, which callers see: name
    paths in it as the run's log does (the server log above keeps them). Only a
    plain one-message exception is reworded; its type stays, so whether the run
    is retried does not change."""
    plain = type(exc).__str__ is BaseException.__str__
    if plain and len(exc.args) == 1 and isinstance(exc.args[0], str):
        exc.args = (without_paths(exc.args[0], base_model=run.base_model),)


def _train(run: TrainingRun, tracker: _Tracker, on_step: StepCallback | None) -> str:
    from training.ml.device import pick_device
    from training.ml.trainer import train_lora

    # Checked again here: the gpu worker's disk may be another machine's than
    # the one that accepted the run, and a retry skips the create-time check.
    disk_floor_check("training")
    work = run_work_dir(run)
    dataset = run.dataset
    tracker.log(
        f"Attempt {run.attempts}: copying {dataset.captioned_count} images of "
        f"dataset {dataset.manifest_sha256[:12]}"
    )
    run_checkpoint(run, total=run.config["steps"], message="Copying the dataset")
    samples, validation = validation_split(
        dataset_samples(dataset, work / "data"),
        float(run.config.get("validation_split") or 0.0),
        seed=int(run.config.get("seed", 0)),
    )
    reg_samples = _reg_samples(run, work / "reg")
    if validation or reg_samples:
        tracker.log(
            f"{len(samples)} training images, {len(validation)} held out for "
            f"validation, {len(reg_samples)} regularisation images"
        )
    config = _train_config(run, work / "out")
    # Hashing the base model's weights reads them all once per worker.
    run_checkpoint(run, message="Checking the base model's files")
    _write_manifest(run, config, reg_samples=reg_samples, validation=validation)

    def stage(text: str) -> None:
        # Also how a cancel lands in a long phase (loading, encoding, samples).
        run_checkpoint(run, message=text)

    # Measures this device's step time for the admin's estimates (kept per
    # base model, device and shape; a failure there never fails the run).
    timer = StepTimer(
        base_model=run.base_model,
        device=pick_device(settings.TRAINING_DEVICE),
        config=run.config,
    )

    def step(report: StepReport) -> None:
        tracker.step(report)
        timer.step(report)
        if on_step is not None:
            on_step(report)
        # Heartbeat, and RunCancelled out through train_lora when asked to stop.
        run_checkpoint(
            run,
            done=report.step,
            total=report.total_steps,
            message=f"Step {report.step} of {report.total_steps}, "
            f"loss {report.loss:.4f}",
        )

    result = train_lora(
        config,
        samples,
        reg_samples=reg_samples,
        validation_samples=validation,
        on_step=step,
        on_checkpoint=tracker.checkpoint,
        log=tracker.log,
        on_stage=stage,
    )
    tracker.finish()
    run_checkpoint(run, message="Registering the LoRA and its samples")
    album = _ingest_samples(run, result, config)
    lora = lora_register_from_run(run=run, lora_path=Path(result.lora_path))
    if album is not None and lora.sample_album_id is None:
        lora.sample_album = album
        lora.save(update_fields=["sample_album"])
    for copies in ("data", "reg"):  # storage has them
        shutil.rmtree(work / copies, ignore_errors=True)
    tracker.log(f"Registered LoRA {lora.name!r} ({lora.size:,} bytes)")
    return _summary(result, lora.name)


def _summary(result: TrainResult, lora_name: str) -> str:
    loss = (
        f"final loss {result.final_loss:.4f}"
        if math.isfinite(result.final_loss)
        else "nothing left to train"
    )
    resumed = (
        f", resumed from step {result.resumed_from_step}"
        if result.resumed_from_step
        else ""
    )
    return f"Trained {result.steps_done} steps ({loss}{resumed}); LoRA {lora_name!r}"


def dataset_samples(dataset: DatasetVersion, dest: Path) -> list[TrainSample]:
    """The version's images copied to `dest`, as samples in manifest order,
    each with its training text and its album's repeats."""
    pairs = dataset_materialize(dataset, dest)
    items = dataset.manifest.get("items", [])
    return [
        TrainSample(str(path), text, item_repeats(item))
        for (path, text), item in zip(pairs, items, strict=True)
    ]


def validation_split(
    samples: list[TrainSample], fraction: float, *, seed: int
) -> tuple[list[TrainSample], list[TrainSample]]:
    """(training, validation): `fraction` of the images held out, chosen by
    `seed` (the same run holds out the same images on every attempt). At least
    one image each way once `fraction` is above 0 and there are two images."""
    if fraction <= 0 or len(samples) < 2:
        return samples, []
    count = min(len(samples) - 1, max(1, round(len(samples) * fraction)))
    held = set(random.Random(seed).sample(range(len(samples)), count))
    training = [s for i, s in enumerate(samples) if i not in held]
    return training, [s for i, s in enumerate(samples) if i in held]


def _reg_samples(run: TrainingRun, dest: Path) -> list[TrainSample]:
    """The regularisation album's images copied to `dest` with their captions
    (no trigger word: they show the class, not the concept); none without one."""
    album_id = run.config.get("reg_album") or 0
    if not album_id:
        return []
    album = Album.objects.filter(pk=album_id).first()
    if album is None:
        raise InvalidTrainingInput(
            f"The regularisation album (id {album_id}) was deleted since the run "
            "was created."
        )
    items = album_training_items(album, include_nsfw=run.dataset.include_nsfw)
    dest.mkdir(parents=True, exist_ok=True)
    samples = []
    for n, item in enumerate(items, start=1):
        target = dest / f"{n:05d}-{item['sha256'][:12]}{item_suffix(item)}"
        with open_item(item) as source:
            size = getattr(source, "size", None)
            if not (target.exists() and target.stat().st_size == size):
                copy_atomically(source, target)
        samples.append(TrainSample(str(target), item["caption"]))
    return samples


def _train_config(run: TrainingRun, output_dir: Path) -> TrainConfig:
    fields = {name: run.config[name] for name in ML_FIELDS if name in run.config}
    return TrainConfig(
        base_model=run.base_model,
        base_model_name=base_model_name(run.base_model),
        output_dir=str(output_dir),
        device=settings.TRAINING_DEVICE,
        trigger_word=run.dataset.trigger_word,
        dataset_hash=run.dataset.manifest_sha256,
        sample_prompts=tuple(sample_prompts(run.dataset)),
        sample_seed=int(run.config.get("seed", 0)),
        **fields,
    )


# The run's config fields that are TrainConfig's; the others (RUN_ONLY_FIELDS)
# become regularisation and validation samples here.
ML_FIELDS = tuple(spec.name for spec in FIELDS if spec.name not in RUN_ONLY_FIELDS)


def training_manifest(
    run: TrainingRun,
    config: TrainConfig,
    *,
    reg_samples: Sequence[TrainSample] = (),
    validation: Sequence[TrainSample] = (),
) -> dict[str, Any]:
    """What reproduces the run: every config option (the run's config, with
    the resolution and learning rate it was given), the data and the code.
    No ids or times: two runs of the same setup have the same manifest, and so
    the same hash."""
    from training.ml.base import hash_base_model, library_versions

    try:
        base_hash = hash_base_model(run.base_model)
    except (OSError, ValueError):
        base_hash = ""  # train_lora says what is wrong with the base model
    return {
        "format": 1,
        "dataset": {
            "manifest_sha256": run.dataset.manifest_sha256,
            "images": run.dataset.captioned_count,
            "trigger_word": run.dataset.trigger_word,
        },
        # Its name and hash identify the model; where it lies does not.
        "base_model": {"id": config.base_model_name, "sha256": base_hash},
        "libraries": library_versions(),
        "device": _device_name(),
        "seed": config.seed,
        "config": run.config,
        "sample_prompts": list(config.sample_prompts),
        "sample_seed": config.sample_seed,
        "validation_images": [Path(s.image_path).name for s in validation],
        "regularisation": {
            "images": len(reg_samples),
            "sha256": _samples_digest(reg_samples),
        },
    }


def _samples_digest(samples: Sequence[TrainSample]) -> str:
    """Identifies regularisation images by content and caption: their files
    are named by content hash, so the names and captions are enough."""
    if not samples:
        return ""
    lines = sorted(f"{Path(s.image_path).name}\t{s.caption}" for s in samples)
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def _device_name() -> str:
    from training.ml.device import pick_device

    try:
        return pick_device(settings.TRAINING_DEVICE)
    except ValueError:
        return settings.TRAINING_DEVICE


def manifest_sha256(manifest: dict[str, Any]) -> str:
    canonical = json.dumps(manifest, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _write_manifest(run: TrainingRun, config: TrainConfig, **samples: Any) -> None:
    run.manifest = training_manifest(run, config, **samples)
    run.manifest_sha256 = manifest_sha256(run.manifest)
    TrainingRun.objects.filter(pk=run.pk).update(
        manifest=run.manifest, manifest_sha256=run.manifest_sha256
    )


def _ingest_samples(
    run: TrainingRun, result: TrainResult, config: TrainConfig
) -> Album | None:
    """The run's sample PNGs as images in a private album linked to the run."""
    if not result.sample_paths:
        return None
    album = run.sample_album or album_get_or_create(
        name=f"Training run #{run.pk} samples",
        source_kind=Album.Kind.GENERATED,
        created_by=run.created_by,
    )
    album_update(
        album=album,
        visibility=Visibility.PRIVATE,
        description=f"Samples of training run #{run.pk} ({run.name}) after "
        f"{result.steps_done} steps: the prompts {list(config.sample_prompts)} "
        f"with seeds from {config.sample_seed}.",
    )
    for i, path in enumerate(result.sample_paths):
        ingested = image_ingest(
            data=Path(path).read_bytes(),
            filename=f"run-{run.pk}-sample-{i:02d}.png",
            source_kind=SourceKind.GENERATED,
            album=album,
        )
        if ingested.image is not None:
            _keep_private(ingested.image)
        else:
            logger.warning("Sample %s of run %s refused: %s", path, run.pk, ingested)
    TrainingRun.objects.filter(pk=run.pk).update(sample_album=album)
    run.sample_album = album
    return album


def _keep_private(image: Image) -> None:
    if image.visibility != Visibility.PRIVATE:
        image_update(image=image, visibility=Visibility.PRIVATE)


class _Tracker:
    """Streams a run's step reports, checkpoints and log lines to its row.

    The loss curve holds one point per `stride` steps (the mean loss over
    them), with `stride` fixed from the total so the curve never needs
    thinning and an attempt that resumes simply carries on.
    """

    def __init__(self, run: TrainingRun) -> None:
        self.run = run
        self.lines: deque[str] = deque(run.log_tail.splitlines(), maxlen=LOG_LINES)
        self.curve: list[list[float]] = [list(p) for p in run.loss_curve]
        self.window: list[float] = []
        self.resumed = False
        self.flushed = 0.0

    def _save(self, **fields: Any) -> None:
        TrainingRun.objects.filter(pk=self.run.pk).update(**fields)
        for name, value in fields.items():
            setattr(self.run, name, value)

    def log(self, line: str) -> None:
        logger.info("Training run %s: %s", self.run.pk, line)
        # The server log keeps the paths; the run's log is shown to callers.
        line = without_paths(line, base_model=self.run.base_model)
        self.lines.append(f"{timezone.now():%H:%M:%S} {line}")
        self._save(log_tail="\n".join(self.lines))

    def step(self, report: StepReport) -> None:
        if not self.resumed:
            # Points past the resumed step belong to steps trained again now.
            self.curve = [p for p in self.curve if p[0] < report.step]
            self.resumed = True
        stride = max(1, math.ceil(report.total_steps / CURVE_POINTS))
        self.window.append(report.loss)
        if report.step % stride == 0 or report.step == report.total_steps:
            self.curve.append([report.step, sum(self.window) / len(self.window)])
            self.window = []
        fields: dict[str, Any] = {
            "loss": report.loss,
            "learning_rate": report.lr,
            "images_per_second": report.images_per_second,
            "eta_seconds": report.eta_seconds,
        }
        now = time.monotonic()
        if now - self.flushed >= CURVE_FLUSH_SECONDS or report.step == (
            report.total_steps
        ):
            fields["loss_curve"] = self.curve
            self.flushed = now
        self._save(**fields)

    def checkpoint(self, step: int, path: str) -> None:
        self._save(last_checkpoint_step=step, loss_curve=self.curve)
        self.log(f"Checkpoint at step {step}")

    def finish(self) -> None:
        self._save(loss_curve=self.curve, eta_seconds=0.0)

    def stopped(self, line: str) -> None:
        """The run ends here: nothing is left to estimate."""
        self._save(eta_seconds=None)
        self.log(line)
