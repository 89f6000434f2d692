"""A set laid out for a person to look at or take away: the contact sheet (a
PNG grid of the slots in slot order, each labelled, a placeholder where a slot
is missing or failed) and the export zip (each chosen image named by its slot
key, the sheet, and slots.csv with each slot's prompt, seed and sha256).

Both are made on request from the stored images: a 78-card set reads 78
files, a second or two; nothing is cached, so they always show the set as it
is now.
"""

from __future__ import annotations

import csv
import io
import math
import tempfile
import zipfile
from typing import IO

from django.core.files.storage import default_storage
from PIL import Image as PILImage
from PIL import ImageDraw, ImageFont, ImageOps

from training.models import SetAlbum
from training.sets.selectors import FILLED, SlotStatus, slot_counts, slot_statuses

CELL_WIDTH = 160  # px; a cell's height follows the set's aspect ratio
LABEL_HEIGHT = 22
GAP = 8
HEADER_HEIGHT = 36
BACKGROUND = (246, 244, 239)
PLACEHOLDER = {"missing": (222, 219, 212), "failed": (240, 206, 200)}
INK = (40, 40, 40)
FADED = (120, 116, 108)


def grid_columns(count: int) -> int:
    """Columns of the grid: square-ish, a little wider for large sets
    (12 slots: 4 × 3; 54: 9 × 6; 78: 10 × 8)."""
    if count <= 0:
        return 1
    return math.ceil(math.sqrt(count)) + (1 if count > 16 else 0)


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)


def _fit(text: str, font: ImageFont.FreeTypeFont, width: int) -> str:
    """`text`, shortened with an ellipsis to fit `width` pixels."""
    if font.getlength(text) <= width:
        return text
    while text and font.getlength(text + "…") > width:
        text = text[:-1]
    return text + "…"


def _thumbnail(slot: SlotStatus, size: tuple[int, int]) -> PILImage.Image:
    with default_storage.open(slot.image.file.name, "rb") as handle:
        picture = PILImage.open(handle)
        picture.draft("RGB", size)  # JPEGs decode at a fraction of their size
        picture = picture.convert("RGB")
    return ImageOps.contain(picture, size)  # up or down: small renders fill it


def contact_sheet(
    set_album: SetAlbum,
    *,
    show_missing: bool = True,
    statuses: list[SlotStatus] | None = None,
) -> bytes:
    """The set as one PNG in slot order; `show_missing=False` leaves out the
    slots that are not filled (what visitors see). `statuses`: the set's
    slot_statuses when the caller has them already."""
    statuses = slot_statuses(set_album) if statuses is None else statuses
    slots = statuses
    if not show_missing:
        slots = [s for s in slots if s.status == FILLED]
    columns = grid_columns(len(slots))
    rows = max(1, math.ceil(len(slots) / columns))
    cell_h = round(CELL_WIDTH * set_album.height / max(1, set_album.width))
    width = GAP + columns * (CELL_WIDTH + GAP)
    height = HEADER_HEIGHT + GAP + rows * (cell_h + LABEL_HEIGHT + GAP)
    sheet = PILImage.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    _header(draw, set_album, slot_counts(statuses), width)
    label_font, note_font = _font(12), _font(14)
    for index, slot in enumerate(slots):
        x = GAP + (index % columns) * (CELL_WIDTH + GAP)
        y = HEADER_HEIGHT + GAP + (index // columns) * (cell_h + LABEL_HEIGHT + GAP)
        if slot.status == FILLED:
            picture = _thumbnail(slot, (CELL_WIDTH, cell_h))
            sheet.paste(
                picture,
                (
                    x + (CELL_WIDTH - picture.width) // 2,
                    y + (cell_h - picture.height) // 2,
                ),
            )
        else:
            _placeholder(
                draw, (x, y, x + CELL_WIDTH - 1, y + cell_h - 1), slot, note_font
            )
        draw.text(
            (x + CELL_WIDTH // 2, y + cell_h + 4),
            _fit(slot.label, label_font, CELL_WIDTH),
            fill=INK,
            font=label_font,
            anchor="ma",
        )
    out = io.BytesIO()
    sheet.save(out, "PNG", optimize=True)
    return out.getvalue()


def _header(
    draw: ImageDraw.ImageDraw, set_album: SetAlbum, counts: dict[str, int], width: int
) -> None:
    theme = f" · {set_album.theme}" if set_album.theme else ""
    title = f"{set_album.album.name} · {set_album.template.name}{theme}"
    total = sum(counts.values())
    tally = f"{counts[FILLED]} of {total} filled"
    font = _font(16)
    draw.text((GAP, 10), _fit(title, font, width - 180), fill=INK, font=font)
    draw.text((width - GAP, 10), tally, fill=FADED, font=font, anchor="ra")


def _placeholder(
    draw: ImageDraw.ImageDraw,
    box: tuple[int, int, int, int],
    slot: SlotStatus,
    font: ImageFont.FreeTypeFont,
) -> None:
    draw.rectangle(box, fill=PLACEHOLDER.get(slot.status, PLACEHOLDER["missing"]))
    draw.rectangle(box, outline=FADED, width=1)
    middle = ((box[0] + box[2]) // 2, (box[1] + box[3]) // 2)
    draw.text(middle, slot.status, fill=FADED, font=font, anchor="mm")


def slots_csv(slots: list[SlotStatus]) -> str:
    """slot → prompt, seed, image sha256 (empty for a slot not filled)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(
        ["position", "key", "label", "status", "file", "prompt", "seed", "sha256"]
    )
    for slot in slots:
        filled = slot.status == FILLED
        writer.writerow(
            [
                slot.position + 1,
                slot.key,
                slot.label,
                slot.status,
                _file_name(slot) if filled else "",
                slot.prompt,
                slot.seed if filled else "",
                slot.image.sha256 if filled else "",
            ]
        )
    return out.getvalue()


def _file_name(slot: SlotStatus) -> str:
    extension = {"JPEG": "jpg"}.get(slot.image.format, slot.image.format.lower())
    return f"{slot.key}.{extension}"


def set_zip(set_album: SetAlbum) -> IO[bytes]:
    """The set as a zip (spooled to disk past a few MB), positioned at its
    start: each filled slot's image as `<key>.png`, `contact-sheet.png` and
    `slots.csv`."""
    slots = slot_statuses(set_album)
    spool = tempfile.SpooledTemporaryFile(max_size=16 << 20)  # noqa: SIM115
    with zipfile.ZipFile(spool, "w", zipfile.ZIP_STORED) as archive:
        for slot in slots:
            if slot.status != FILLED:
                continue
            with default_storage.open(slot.image.file.name, "rb") as handle:
                archive.writestr(_file_name(slot), handle.read())
        archive.writestr("contact-sheet.png", contact_sheet(set_album, statuses=slots))
        archive.writestr("slots.csv", slots_csv(slots))
    spool.seek(0)
    return spool


def set_file_stem(set_album: SetAlbum) -> str:
    """A download's file name without extension: the album's slug."""
    return set_album.album.slug or f"set-{set_album.pk}"
