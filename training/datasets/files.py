"""The stored files of a dataset version: the text each item trains with, and
copies of the images for a trainer or an export."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path, PurePosixPath
from typing import Any

from django.core.files.storage import default_storage

from training.datasets.services import DatasetFileMissing
from training.models import DatasetVersion


def caption_with_trigger(caption: str, trigger_word: str) -> str:
    """The text an image trains with: its caption, led by the trigger word
    unless the caption already names it (as a whole word, any case)."""
    trigger = trigger_word.strip()
    if not trigger:
        return caption
    pattern = rf"(?<!\w){re.escape(trigger)}(?!\w)"
    if re.search(pattern, caption, flags=re.IGNORECASE):
        return caption
    return f"{trigger}, {caption}" if caption else trigger


def dataset_items(dataset: DatasetVersion) -> list[dict[str, Any]]:
    """The manifest's items, each with `text`: the caption it trains with."""
    return [
        {**item, "text": caption_with_trigger(item["caption"], dataset.trigger_word)}
        for item in dataset.manifest.get("items", [])
    ]


def item_suffix(item: dict[str, Any]) -> str:
    """The stored file's extension ('.jpg'), lower case; '.bin' when it has none."""
    return PurePosixPath(item["file"]).suffix.lower() or ".bin"


def open_item(item: dict[str, Any]) -> Any:
    """The stored file of a manifest item, opened for reading in binary."""
    try:
        return default_storage.open(item["file"], "rb")
    except (FileNotFoundError, OSError) as exc:
        raise DatasetFileMissing(
            f"The file of image {item['image_id']} is missing from storage; "
            "re-upload the image or build a new dataset version without it."
        ) from exc


def copy_atomically(source: Any, target: Path) -> None:
    """Write `source` (a binary file object) to `target` through a temporary
    file and a rename, so a crash never leaves a short file that looks done."""
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as tmp:
            shutil.copyfileobj(source, tmp, 1 << 20)
        Path(tmp_name).replace(target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def dataset_materialize(dataset: DatasetVersion, dest: Path) -> list[tuple[Path, str]]:
    """Copy the version's images from storage into `dest` as
    `00001-<sha12>.<ext>` and return [(path, training text)] in manifest order.

    Files already there with the stored size are kept, so a resumed run copies
    nothing twice. A missing stored file raises DatasetInvalid naming the image.
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    pairs = []
    for n, item in enumerate(dataset_items(dataset), start=1):
        target = dest / f"{n:05d}-{item['sha256'][:12]}{item_suffix(item)}"
        with open_item(item) as source:
            size = getattr(source, "size", None)
            if not (target.exists() and target.stat().st_size == size):
                copy_atomically(source, target)
        pairs.append((target, item["text"]))
    return pairs
