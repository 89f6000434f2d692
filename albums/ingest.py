"""Turn untrusted bytes into a validated, sanitised image and its derivatives.

Pure functions on bytes: no database, no storage. Upload, bulk upload, the
folder importer and the scraper all go through `inspect_image`, so every image
in the library passed the same checks:

1. size caps and content sniffing (the extension and Content-Type are never
   trusted; a known image extension that disagrees with the content is refused);
2. lossless metadata stripping, refusing files that smuggle HTML/SVG/PDF;
3. a pixel cap read from the header before any decoding (decompression bombs);
4. a full decode of every frame (truncated or corrupt data fails here);
5. EXIF orientation applied for the size, thumbnails and perceptual hash.
"""

from __future__ import annotations

import hashlib
import io
import re
import warnings
from dataclasses import dataclass, field
from pathlib import PurePosixPath

import imagehash
from django.conf import settings
from PIL import Image as PILImage
from PIL import ImageOps

from albums.sanitize import MalformedContainer, sanitize

ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP")
EXTENSIONS = {
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".jpe": "JPEG",
    ".jfif": "JPEG",
    ".png": "PNG",
    ".apng": "PNG",
    ".webp": "WEBP",
    ".gif": "GIF",
    ".bmp": "BMP",
    ".dib": "BMP",
}
FILE_EXTENSION = {
    "JPEG": "jpg",
    "PNG": "png",
    "WEBP": "webp",
    "GIF": "gif",
    "BMP": "bmp",
}
MIME_TYPES = {
    "JPEG": "image/jpeg",
    "PNG": "image/png",
    "WEBP": "image/webp",
    "GIF": "image/gif",
    "BMP": "image/bmp",
}
MAX_FRAMES = 2000

# Markers of documents a browser or reader would act on. Looked for in the first
# kilobyte and in every byte we strip (metadata, trailing data): a valid image
# carrying them is a polyglot.
_DOCUMENT_MARKERS = re.compile(
    rb"<\s*(?:script|html|svg|iframe|body|object|embed)\b|<!doctype\s+html|%PDF-|<\?php",
    re.IGNORECASE,
)


class ImageRejected(Exception):
    """The input is not an image we will store. `code` is machine-readable."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


@dataclass(frozen=True)
class InspectedImage:
    data: bytes
    sha256: str
    format: str
    width: int
    height: int
    is_animated: bool
    phash: int
    thumbnails: dict[int, bytes] = field(repr=False)

    @property
    def extension(self) -> str:
        return FILE_EXTENSION[self.format]


def sniff_format(data: bytes) -> str | None:
    head = data[:16]
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "GIF"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head.startswith(b"BM") and len(data) > 26:
        return "BMP"
    return None


def safe_display_name(filename: str | None) -> str:
    """The last path component only, stripped of control characters; for display."""
    if not filename:
        return ""
    name = PurePosixPath(filename.replace("\\", "/")).name
    name = "".join(ch for ch in name if ch.isprintable())
    return name.strip()[:255]


def inspect_image(data: bytes, filename: str | None = None) -> InspectedImage:
    """Validate and sanitise `data`; raise ImageRejected with a reason if unfit."""
    _check_size(data)
    fmt = _check_format(data, filename)
    try:
        clean = sanitize(data, fmt)
    except MalformedContainer as exc:
        raise ImageRejected(
            "corrupt", f"Corrupt or truncated {fmt} file: {exc}."
        ) from exc
    except Exception as exc:
        raise ImageRejected("corrupt", f"Corrupt {fmt} file: {exc}.") from exc
    if _DOCUMENT_MARKERS.search(data[:1024]) or _DOCUMENT_MARKERS.search(clean.dropped):
        raise ImageRejected(
            "polyglot", "The file hides an HTML, SVG or PDF document inside the image."
        )
    im = _decode(clean.data, fmt)
    try:
        return _derive(clean.data, fmt, im)
    finally:
        im.close()


def _check_size(data: bytes) -> None:
    if not data:
        raise ImageRejected("empty", "The file is empty.")
    limit = settings.IMAGINEER_MAX_UPLOAD_BYTES
    if len(data) > limit:
        raise ImageRejected(
            "too_large", f"The file is {len(data):,} bytes; the limit is {limit:,}."
        )


def _check_format(data: bytes, filename: str | None) -> str:
    fmt = sniff_format(data)
    if fmt is None:
        head = data[:1024].lstrip().lower()
        if head.startswith((b"<svg", b"<?xml")) or b"<svg" in head:
            raise ImageRejected("unsupported", "SVG files are not accepted.")
        if head.startswith(b"%pdf"):
            raise ImageRejected("unsupported", "PDF files are not accepted.")
        if _DOCUMENT_MARKERS.search(head):
            raise ImageRejected("unsupported", "HTML files are not accepted.")
        raise ImageRejected(
            "unsupported",
            "Not a recognised image (accepted: JPEG, PNG, WEBP, GIF, BMP).",
        )
    suffix = PurePosixPath(safe_display_name(filename)).suffix.lower()
    claimed = EXTENSIONS.get(suffix)
    if suffix and claimed is None:
        raise ImageRejected(
            "mismatch", f"The extension {suffix} is not an accepted image type."
        )
    if claimed and claimed != fmt:
        raise ImageRejected(
            "mismatch", f"The file is named {suffix} but its content is {fmt}."
        )
    return fmt


def _decode(data: bytes, fmt: str) -> PILImage.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", PILImage.DecompressionBombWarning)
            im = PILImage.open(io.BytesIO(data), formats=[fmt])
            width, height = im.size
            cap = settings.IMAGINEER_MAX_IMAGE_PIXELS
            if width * height > cap:
                im.close()
                raise ImageRejected(
                    "too_many_pixels",
                    f"The image claims {width}×{height} pixels; the limit is "
                    f"{cap:,} pixels (decompression bomb protection).",
                )
            frames = getattr(im, "n_frames", 1)
            if frames > MAX_FRAMES or frames * width * height > 4 * cap:
                im.close()
                raise ImageRejected("too_many_pixels", "The animation is too large.")
            for index in range(frames):  # every frame, so a bad later frame fails
                im.seek(index)
                im.load()
            if frames > 1:
                im.seek(0)
                im.load()
            return im
    except ImageRejected:
        raise
    except (PILImage.DecompressionBombError, PILImage.DecompressionBombWarning) as exc:
        raise ImageRejected("too_many_pixels", f"Decompression bomb: {exc}.") from exc
    except Exception as exc:  # Pillow raises OSError, SyntaxError, ValueError...
        raise ImageRejected(
            "corrupt", f"Corrupt or truncated {fmt} data: {exc}."
        ) from exc


def _derive(data: bytes, fmt: str, im: PILImage.Image) -> InspectedImage:
    is_animated = getattr(im, "n_frames", 1) > 1
    frame = _upright(im, fmt)
    width, height = frame.size
    working = _displayable(frame)
    thumbnails: dict[int, bytes] = {}
    # Smallest first is not possible (each resize shrinks `working`), so largest
    # first: each smaller size is resized from the previous one.
    for size in sorted(settings.IMAGINEER_INGEST_THUMBNAIL_SIZES, reverse=True):
        thumbnails[size] = _thumbnail_bytes(working, size)
    return InspectedImage(
        data=data,
        sha256=hashlib.sha256(data).hexdigest(),
        format=fmt,
        width=width,
        height=height,
        is_animated=is_animated,
        phash=perceptual_hash(working),
        thumbnails=thumbnails,
    )


def render_thumbnail(data: bytes, fmt: str, size: int) -> bytes:
    """A WEBP thumbnail of already-validated stored bytes (for sizes made lazily)."""
    with PILImage.open(io.BytesIO(data), formats=[fmt]) as im:
        if fmt == "JPEG":
            im.draft("RGB", (size, size))  # let libjpeg decode at a reduced scale
        im.load()
        return _thumbnail_bytes(_displayable(_upright(im, fmt)), size)


def _upright(im: PILImage.Image, fmt: str) -> PILImage.Image:
    return ImageOps.exif_transpose(im) if fmt in ("JPEG", "PNG") else im


def _thumbnail_bytes(working: PILImage.Image, size: int) -> bytes:
    # reducing_gap lets Pillow box-reduce by an integer factor first, then
    # resample the small remainder: several times faster than a full resample.
    working.thumbnail((size, size), PILImage.Resampling.BICUBIC, reducing_gap=1.5)
    buf = io.BytesIO()
    working.save(buf, "WEBP", quality=82, method=0)
    return buf.getvalue()


def _displayable(frame: PILImage.Image) -> PILImage.Image:
    has_alpha = frame.mode in ("RGBA", "LA", "PA") or (
        frame.mode == "P" and "transparency" in frame.info
    )
    return frame.convert("RGBA" if has_alpha else "RGB")


def perceptual_hash(im: PILImage.Image) -> int:
    """64-bit DCT pHash as a signed integer (fits a PostgreSQL bigint).

    Always computed from the smallest thumbnail, so every stored hash comes from
    the same pipeline and Hamming distances between them are meaningful.
    """
    value = int(str(imagehash.phash(im)), 16)
    return value - (1 << 64) if value >= (1 << 63) else value


def hamming(a: int, b: int) -> int:
    return ((a ^ b) & ((1 << 64) - 1)).bit_count()
