"""Export a dataset version as files other trainers read.

Three layouts, all named by position in the manifest (image_0001, ...):

- flat: image_0001.png + image_0001.txt pairs, every image converted to PNG
  (the SD 1.5 example scripts' format);
- kohya: <repeats>_<concept>/image_0001.<ext> + image_0001.txt, originals kept
  (an item whose album repeats N times goes in <repeats × N>_<concept>/);
- jsonl: originals plus metadata.jsonl, one {"file_name", "text"} per line
  (Hugging Face's imagefolder).

Captions are the text each image trains with (training.dataset.dataset_items:
the trigger word first unless the caption names it). A folder export is
idempotent: a marker file (.imagineer-export.json) records what was written,
so exporting again keeps the files already right and removes those of an
earlier, different export; a folder holding anything else is refused.
"""

from __future__ import annotations

import io
import json
import logging
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from django.utils.text import slugify
from PIL import Image as PILImage
from PIL import ImageOps

from imagineer_project.errors import Invalid
from training.datasets.files import (
    copy_atomically,
    dataset_items,
    item_suffix,
    open_item,
)
from training.datasets.services import MAX_REPEATS, item_repeats
from training.models import DatasetExport, DatasetVersion

logger = logging.getLogger(__name__)

LAYOUTS = tuple(DatasetExport.Layout.values)  # flat, kohya, jsonl
MARKER = ".imagineer-export.json"
# Zip entries carry this date, so the same export gives the same zip bytes.
ZIP_DATE = (1980, 1, 1, 0, 0, 0)


class ExportRefused(Invalid):
    """The export cannot go where it was asked to (message says why)."""


@dataclass(frozen=True)
class ExportFile:
    """One file of an export: a stored image (as is or as PNG) or a text."""

    name: str  # relative, with "/" separators
    item: dict[str, Any] | None = None
    text: str | None = None
    as_png: bool = False

    def data(self) -> bytes:
        """The file's bytes (for texts and converted images)."""
        if self.text is not None:
            return self.text.encode()
        assert self.item is not None
        with open_item(self.item) as source:
            return png_bytes(source.read())


def png_bytes(data: bytes) -> bytes:
    """A PNG of the image, upright (EXIF orientation applied), first frame of an
    animation; with alpha only when the image has transparency."""
    with PILImage.open(io.BytesIO(data)) as im:
        im.seek(0)
        frame = ImageOps.exif_transpose(im)
        transparent = frame.mode in ("RGBA", "LA", "PA") or (
            frame.mode == "P" and "transparency" in frame.info
        )
        frame = frame.convert("RGBA" if transparent else "RGB")
        buf = io.BytesIO()
        frame.save(buf, "PNG")  # no timestamps: the same pixels, the same bytes
        return buf.getvalue()


def concept_name(dataset: DatasetVersion) -> str:
    """The kohya folder's concept: the trigger word, else the dataset's name."""
    return slugify(dataset.trigger_word) or slugify(dataset.name) or "dataset"


def export_plan(
    dataset: DatasetVersion, layout: str, *, repeats: int = 10
) -> list[ExportFile]:
    """The files of `layout`, in a fixed order, with their relative names."""
    if layout not in LAYOUTS:
        raise ExportRefused(f"Unknown layout {layout!r}: use one of {LAYOUTS}.")
    if not 1 <= repeats <= MAX_REPEATS:
        raise ExportRefused(f"repeats must be between 1 and {MAX_REPEATS}.")
    files: list[ExportFile] = []
    lines = []
    for n, item in enumerate(dataset_items(dataset), start=1):
        # An item's own repeats (its album's) multiply the export's.
        count = repeats * item_repeats(item)
        folder = f"{count}_{concept_name(dataset)}/" if layout == "kohya" else ""
        stem = f"{folder}image_{n:04d}"
        if layout == "flat":
            files.append(ExportFile(f"{stem}.png", item=item, as_png=True))
        else:
            files.append(ExportFile(f"{stem}{item_suffix(item)}", item=item))
        if layout == "jsonl":
            row = {"file_name": f"{stem}{item_suffix(item)}", "text": item["text"]}
            lines.append(json.dumps(row, ensure_ascii=False) + "\n")
        else:
            files.append(ExportFile(f"{stem}.txt", text=item["text"]))
    if layout == "jsonl":
        files.append(ExportFile("metadata.jsonl", text="".join(lines)))
    return files


# --- to a folder ------------------------------------------------------------------


def _marker(dataset: DatasetVersion, layout: str, repeats: int) -> dict[str, Any]:
    return {
        "dataset_id": dataset.pk,
        "manifest_sha256": dataset.manifest_sha256,
        "layout": layout,
        "repeats": repeats,
    }


def _previous(dest: Path) -> dict[str, Any] | None:
    """The marker of an earlier export into `dest`; None for a new folder;
    ExportRefused for a folder holding other things."""
    if not dest.exists():
        return None
    if not dest.is_dir():
        raise ExportRefused(f"{dest} is not a folder.")
    marker = dest / MARKER
    if marker.is_file():
        try:
            return json.loads(marker.read_text())
        except ValueError as exc:
            raise ExportRefused(f"{marker} is damaged; remove the folder.") from exc
    if any(dest.iterdir()):
        raise ExportRefused(
            f"{dest} is not empty and holds no earlier export: choose an empty or "
            "new folder, or one an earlier export wrote."
        )
    return None


def _remove(dest: Path, names: list[str]) -> None:
    """Delete an earlier export's files, then its folders left empty."""
    folders = set()
    for name in names:
        path = dest / name
        if path.resolve().is_relative_to(dest.resolve()):  # never outside dest
            path.unlink(missing_ok=True)
            folders.update(p for p in path.parents if p != dest and dest in p.parents)
    for folder in sorted(folders, key=lambda p: len(p.parts), reverse=True):
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()


def _write(entry: ExportFile, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if entry.text is not None:
        data = entry.data()
        if not (target.is_file() and target.read_bytes() == data):
            copy_atomically(io.BytesIO(data), target)
    elif not target.exists():  # written atomically by this same plan: complete
        if entry.as_png:
            copy_atomically(io.BytesIO(entry.data()), target)
        else:
            assert entry.item is not None
            with open_item(entry.item) as source:
                copy_atomically(source, target)


def dataset_export(
    dataset: DatasetVersion, dest: Path, *, layout: str, repeats: int = 10
) -> Path:
    """Write the version into `dest` in `layout`; return `dest`.

    Exporting the same version and layout again writes only what is missing
    (and captions that differ); a different earlier export there is replaced.
    Raises ExportRefused for a bad layout or a folder holding other files, and
    DatasetInvalid when a stored image is missing.
    """
    dest = Path(dest)
    plan = export_plan(dataset, layout, repeats=repeats)
    marker = _marker(dataset, layout, repeats)
    previous = _previous(dest)
    same = previous is not None and all(previous.get(k) == marker[k] for k in marker)
    if previous is not None and not same:
        # Another version or layout: its files go first, so no file of the
        # old export survives under a name the new one also uses.
        _remove(dest, previous.get("files", []))
    dest.mkdir(parents=True, exist_ok=True)
    marker["files"] = [entry.name for entry in plan]
    (dest / MARKER).write_text(json.dumps(marker, indent=1) + "\n")
    for entry in plan:
        _write(entry, dest / entry.name)
    logger.info("Exported %s as %s to %s", dataset, layout, dest)
    return dest


# --- to a zip ---------------------------------------------------------------------


def _zip_entries(plan: list[ExportFile]) -> Iterator[tuple[zipfile.ZipInfo, Any]]:
    for entry in plan:
        info = zipfile.ZipInfo(entry.name, date_time=ZIP_DATE)
        info.external_attr = 0o644 << 16
        if entry.text is not None or entry.as_png:
            info.compress_type = zipfile.ZIP_DEFLATED
            yield info, entry.data()
        else:
            # JPEG, WebP and PNG are compressed already: store them as they are.
            info.compress_type = zipfile.ZIP_STORED
            yield info, entry.item


def dataset_export_zip(
    dataset: DatasetVersion,
    layout: str,
    *,
    repeats: int = 10,
    on_progress: Callable[[int, int], None] | None = None,
) -> IO[bytes]:
    """The export as a zip in an anonymous temporary file (gone when closed),
    rewound to the start. The same version and layout give the same bytes.
    `on_progress(done, total)` hears of every file written."""
    plan = export_plan(dataset, layout, repeats=repeats)
    out = tempfile.TemporaryFile()  # noqa: SIM115 (the caller closes it)
    try:
        with zipfile.ZipFile(out, "w") as archive:
            for done, (info, content) in enumerate(_zip_entries(plan), start=1):
                if on_progress is not None:
                    on_progress(done, len(plan))
                if isinstance(content, bytes):
                    archive.writestr(info, content)
                    continue
                with open_item(content) as source, archive.open(info, "w") as sink:
                    while chunk := source.read(1 << 20):
                        sink.write(chunk)
    except BaseException:
        out.close()
        raise
    out.seek(0)
    return out


def export_filename(dataset: DatasetVersion, layout: str) -> str:
    """A download name made only of safe characters."""
    name = slugify(dataset.name)[:60] or "dataset"
    return f"dataset-{dataset.pk}-{name}-{dataset.manifest_sha256[:12]}-{layout}.zip"
