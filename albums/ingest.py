"""Turn untrusted bytes into a validated, sanitised image and its derivatives.

Pure functions on bytes: no database, no storage. Upload, bulk upload, the
folder importer and the scraper all go through `inspect_image`, so every image
in the library passed the same checks:

1. size caps and content sniffing: the content decides the format; an
   extension that disagrees with it is a warning (`extension_mismatch`), never
   trusted and never a rejection;
2. a pixel cap (IMAGINEER_MAX_IMAGE_PIXELS) read from the header before any
   decoding, for every format (decompression bombs answer `too_many_pixels`);
3. lossless metadata stripping: comments, text, XMP, EXIF (but orientation),
   thumbnails and trailing data are dropped, so no stored file carries a script
   in its metadata. Only a file whose remaining bytes still read as a document
   (an HTML/SVG/PDF body in the header or pixels) is refused as a polyglot;
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

from albums.sanitize import DOCUMENT_MARKERS as _DOCUMENT_MARKERS
from albums.sanitize import MalformedContainer, sanitize

PILImage.init()  # register every plugin once, so OPEN below is complete

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
# Sniffed only to give a true answer: the format is not accepted.
_OTHER_FORMATS = {b"\x00\x00\x01\x00": "ICO", b"II*\x00": "TIFF", b"MM\x00*": "TIFF"}


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
    # Per-file notes that did not stop the ingest, e.g.
    # {"code": "extension_mismatch", "detail": "named .png, content is JPEG"}.
    warnings: list[dict[str, str]] = field(default_factory=list)

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
    fmt, notes = _check_format(data, filename)
    if fmt == "BMP":  # its sanitising decodes: check the claimed size first
        check_pixels(image_header(data, fmt))
    try:
        clean = sanitize(data, fmt)
    except MalformedContainer as exc:
        raise ImageRejected(
            "corrupt", f"Corrupt or truncated {fmt} file: {exc}."
        ) from exc
    except Exception as exc:
        raise ImageRejected(
            "corrupt", f"Corrupt {fmt} file: {plain_reason(exc)}."
        ) from exc
    # The header of the sanitised file: its text chunks (a zlib bomb) are gone.
    check_pixels(image_header(clean.data, fmt))
    if _DOCUMENT_MARKERS.search(clean.data[:1024]):
        # What is left is header and pixels: they themselves read as a document.
        raise ImageRejected(
            "polyglot",
            "The image's own header or pixel data reads as an HTML, SVG or PDF "
            "document.",
        )
    im = _decode(clean.data, fmt)
    try:
        inspected = _derive(clean.data, fmt, im)
    finally:
        im.close()
    inspected.warnings.extend(notes)
    return inspected


@dataclass(frozen=True)
class Header:
    format: str
    width: int
    height: int
    frames: int

    @property
    def pixels(self) -> int:
        return self.width * self.height

    @property
    def frame_pixels(self) -> int:
        """Pixels to decode for every frame: the measure of decoding work."""
        return self.pixels * self.frames


def image_header(data: bytes, fmt: str) -> Header:
    """Size and frame count from the header alone, without decoding pixels and
    without Pillow's own decompression-bomb limit (check_pixels applies ours)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            im = _open(data, fmt)
            try:
                width, height = im.size
                if width * height > settings.IMAGINEER_MAX_IMAGE_PIXELS:
                    return Header(fmt, width, height, 1)  # no need to count frames
                return Header(fmt, width, height, getattr(im, "n_frames", 1))
            finally:
                im.close()
    except PILImage.DecompressionBombError as exc:  # Pillow's check inside a reader
        # Its message carries the claimed size ("Image size (N pixels) ...");
        # our answer quotes our limit, never Pillow's.
        found = re.search(r"\((\d+) pixels\)", str(exc))
        claim = f"{int(found.group(1)):,} pixels" if found else "too many pixels"
        cap = settings.IMAGINEER_MAX_IMAGE_PIXELS
        raise ImageRejected(
            "too_many_pixels",
            f"The image claims {claim}; the limit is {cap:,} pixels "
            "(IMAGINEER_MAX_IMAGE_PIXELS, decompression bomb protection).",
        ) from exc
    except Exception as exc:  # Pillow raises OSError, SyntaxError, ValueError...
        raise ImageRejected(
            "corrupt", f"Corrupt or truncated {fmt} header: {plain_reason(exc)}."
        ) from exc


def check_pixels(header: Header) -> None:
    cap = settings.IMAGINEER_MAX_IMAGE_PIXELS
    if header.pixels > cap:
        raise ImageRejected(
            "too_many_pixels",
            f"The image claims {header.width:,}×{header.height:,} = "
            f"{header.pixels:,} pixels; the limit is {cap:,} pixels "
            "(IMAGINEER_MAX_IMAGE_PIXELS, decompression bomb protection).",
        )
    if header.frames > MAX_FRAMES or header.frame_pixels > 4 * cap:
        raise ImageRejected(
            "too_many_pixels",
            f"The animation has {header.frames:,} frames of {header.pixels:,} "
            f"pixels; the limit is {MAX_FRAMES:,} frames and {4 * cap:,} pixels "
            "in all (4 × IMAGINEER_MAX_IMAGE_PIXELS).",
        )


def decode_pixels(data: bytes) -> int:
    """How many pixels decoding `data` would produce, over all frames, from its
    header alone (no decoding): what a request weighs before it decides to
    decode a file itself or leave it to the worker. 0 for a file the header
    check refuses anyway (too many pixels, corrupt, not an image): it is
    answered at once."""
    fmt = sniff_format(data)
    if fmt is None:
        return 0
    try:
        # The header of the sanitised file, as inspect_image reads it: a text
        # chunk Pillow refuses to read must not make a heavy file look light.
        # (Sanitising walks chunks only, except BMP's, which decodes.)
        clean = data if fmt == "BMP" else sanitize(data, fmt).data
        header = image_header(clean, fmt)
        check_pixels(header)
    except Exception:  # refused or broken: answered at once by inspect_image
        return 0
    return header.frame_pixels


def _open(data: bytes, fmt: str) -> PILImage.Image:
    """Pillow's reader for `fmt` on `data`, parsing the header only. Called
    directly rather than through Image.open, whose built-in bomb limit would
    answer before (and differently from) IMAGINEER_MAX_IMAGE_PIXELS."""
    factory, _accept = PILImage.OPEN[fmt]
    return factory(io.BytesIO(data))


_REPR = re.compile(r"<[^<>]*\bat 0x[0-9a-fA-F]+>|<_io\.[^>]*>")


def plain_reason(exc: BaseException) -> str:
    """An exception's message fit for a caller: no object repr, no path."""
    if isinstance(exc, PILImage.UnidentifiedImageError):
        return "Pillow does not recognise the data"
    text = _REPR.sub("the data", str(exc)).strip().rstrip(".")
    text = re.sub(r"(?:/[\w.\-]+){2,}", "<path>", text)
    return text or type(exc).__name__


def _check_size(data: bytes) -> None:
    if not data:
        raise ImageRejected("empty", "The file is empty.")
    limit = settings.IMAGINEER_MAX_UPLOAD_BYTES
    if len(data) > limit:
        raise ImageRejected(
            "too_large", f"The file is {len(data):,} bytes; the limit is {limit:,}."
        )


def _check_format(
    data: bytes, filename: str | None
) -> tuple[str, list[dict[str, str]]]:
    """The format the content says, and a warning when the name says another."""
    fmt = sniff_format(data)
    if fmt is None:
        other = _OTHER_FORMATS.get(data[:4])
        if other:
            # A header bomb is named as one even in a format we do not take.
            check_pixels(image_header(data, other))
            raise ImageRejected("unsupported", f"{other} files are not accepted.")
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
    if suffix and EXTENSIONS.get(suffix) != fmt:
        detail = f"named {suffix}, content is {fmt}; stored as .{FILE_EXTENSION[fmt]}"
        return fmt, [{"code": "extension_mismatch", "message": detail}]
    return fmt, []


def _decode(data: bytes, fmt: str) -> PILImage.Image:
    """Decode every frame (the header passed check_pixels already)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PILImage.DecompressionBombWarning)
            im = _open(data, fmt)
            check_pixels(
                Header(fmt, im.size[0], im.size[1], getattr(im, "n_frames", 1))
            )
            frames = getattr(im, "n_frames", 1)
            for index in range(frames):  # every frame, so a bad later frame fails
                im.seek(index)
                im.load()
            if frames > 1:
                im.seek(0)
                im.load()
            return im
    except ImageRejected:
        raise
    except Exception as exc:  # Pillow raises OSError, SyntaxError, ValueError...
        raise ImageRejected(
            "corrupt", f"Corrupt or truncated {fmt} data: {plain_reason(exc)}."
        ) from exc


def _derive(data: bytes, fmt: str, im: PILImage.Image) -> InspectedImage:
    is_animated = getattr(im, "n_frames", 1) > 1
    # The decoded image itself is turned, converted and shrunk in place (the
    # caller closes it): no copy of the full-size pixels unless a conversion
    # needs one.
    _upright(im, fmt)
    width, height = im.size
    working = _displayable(im)
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
    with _open(data, fmt) as im:
        if fmt == "JPEG":
            im.draft("RGB", (size, size))  # let libjpeg decode at a reduced scale
        im.load()
        return _thumbnail_bytes(_displayable(_upright(im, fmt)), size)


def _upright(im: PILImage.Image, fmt: str) -> PILImage.Image:
    """`im` turned as its EXIF orientation says, in place (upright already:
    untouched; exif_transpose would otherwise copy every pixel)."""
    if fmt in ("JPEG", "PNG"):
        ImageOps.exif_transpose(im, in_place=True)
    return im


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
    mode = "RGBA" if has_alpha else "RGB"
    # convert() copies even to the same mode; most photos are RGB already.
    return frame if frame.mode == mode else frame.convert(mode)


def perceptual_hash(im: PILImage.Image) -> int:
    """64-bit DCT pHash as a signed integer (fits a PostgreSQL bigint).

    Always computed from the smallest thumbnail, so every stored hash comes from
    the same pipeline and Hamming distances between them are meaningful.
    """
    value = int(str(imagehash.phash(im)), 16)
    return value - (1 << 64) if value >= (1 << 63) else value


def hamming(a: int, b: int) -> int:
    return ((a ^ b) & ((1 << 64) - 1)).bit_count()
