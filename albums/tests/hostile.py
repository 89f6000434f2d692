"""Hostile and odd image files, built byte by byte, with the verdict each must get.

Valid images come from Pillow; markers, chunks and payloads are spliced in by
hand. `CASES` is the table the upload tests and the before/after measurement
(`python -m albums.tests.hostile`) run over: `expect` is "accept" or the
rejection code.
"""

from __future__ import annotations

import io
import re
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass

from PIL import Image as PILImage

from imagineer_project.testing import make_image_bytes

SCRIPT = b"<script>alert(document.cookie)</script>"
PHP = b"<?php system($_GET['c']); ?>"
# What no stored file may contain: a script or document a browser, reader or
# PHP interpreter would act on.
PAYLOAD = re.compile(
    rb"<\s*(?:script|html|svg|iframe|body)\b|<\?php|%PDF-|onload\s*=", re.IGNORECASE
)


def png_chunk(ctype: bytes, body: bytes) -> bytes:
    crc = zlib.crc32(ctype + body) & 0xFFFFFFFF
    return struct.pack(">I", len(body)) + ctype + body + struct.pack(">I", crc)


def png_insert(data: bytes, chunk: bytes, *, before: bytes = b"IDAT") -> bytes:
    """`data` (a PNG) with `chunk` spliced in before the first `before` chunk."""
    at = data.index(before) - 4
    return data[:at] + chunk + data[at:]


def jpeg_insert(data: bytes, segment: bytes) -> bytes:
    """`data` (a JPEG) with raw `segment` bytes spliced in right after SOI."""
    return data[:2] + segment + data[2:]


def jpeg_segment(marker: int, body: bytes) -> bytes:
    return bytes((0xFF, marker)) + struct.pack(">H", len(body) + 2) + body


def exif_with(**tags: object) -> bytes:
    exif = PILImage.Exif()
    for tag, value in tags.items():
        exif[int(tag.lstrip("t"), 16)] = value
    return exif.tobytes()  # b"Exif\0\0" + TIFF


def gif_with_comment(comment: bytes) -> bytes:
    data = make_image_bytes("GIF", (40, 30), seed=11)
    ext = b"\x21\xfe" + bytes([len(comment)]) + comment + b"\x00"
    return data[:-1] + ext + b"\x3b"  # before the trailer


def gif_disguise() -> bytes:
    """A valid GIF whose global palette (pixel data, not metadata) spells HTML."""
    html = b"<html><body>" + SCRIPT + b"</body></html>"
    palette = html.ljust(3 * 256, b"\x00")[: 3 * 256]
    im = PILImage.new("P", (16, 16), 0)
    im.putdata(range(256))  # every palette entry in use, so all of it is saved
    im.putpalette(palette)
    buf = io.BytesIO()
    im.save(buf, "GIF", optimize=False)
    assert SCRIPT in buf.getvalue()
    return buf.getvalue()


def jpeg_app14_junk() -> bytes:
    """An Adobe APP14 whose length is two bytes short: the segment's last two
    bytes sit where the next marker should be. libjpeg skips them (a warning)
    and Pillow decodes the whole image."""
    data = make_image_bytes("JPEG", (64, 48), seed=12)
    body = b"Adobe\x00\x64\x00\x00\x00\x00\x01"
    bad = b"\xff\xee" + struct.pack(">H", len(body)) + body  # declares 2 too few
    return jpeg_insert(data, bad)


def jpeg_icc_script() -> bytes:
    icc = b"ICC_PROFILE\x00\x01\x01" + b"\x00" * 128 + SCRIPT
    return jpeg_insert(
        make_image_bytes("JPEG", (64, 48), seed=13), jpeg_segment(0xE2, icc)
    )


def jpeg_jfif_thumbnail_script() -> bytes:
    data = make_image_bytes("JPEG", (64, 48), seed=14)
    # JFIF APP0 with a 1×len thumbnail whose "pixels" are a script
    thumb = SCRIPT.ljust(48, b" ")
    body = b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01" + bytes((16, 1)) + thumb
    assert data[2:4] == b"\xff\xe0"
    length = struct.unpack(">H", data[4:6])[0]
    return data[:2] + jpeg_segment(0xE0, body) + data[4 + length :]


def png_ztxt_bomb() -> bytes:
    """A zTXt chunk that inflates to 200 MB of spaces (about 200 kB stored)."""
    z = zlib.compressobj(9)
    payload = z.compress(b" " * (200 * 1024 * 1024)) + z.flush()
    body = b"Comment\x00\x00" + payload
    return png_insert(
        make_image_bytes("PNG", (40, 30), seed=15), png_chunk(b"zTXt", body)
    )


def png_iccp_bomb() -> bytes:
    z = zlib.compressobj(9)
    payload = z.compress(b"\x00" * (200 * 1024 * 1024)) + z.flush()
    body = b"bomb\x00\x00" + payload
    return png_insert(
        make_image_bytes("PNG", (40, 30), seed=16), png_chunk(b"iCCP", body)
    )


def raw_profile_exif(orientation: int) -> bytes:
    tiff = exif_with(t0112=orientation)[6:]
    blob = b"Exif\x00\x00" + tiff
    hexed = blob.hex()
    lines = "\n".join(hexed[i : i + 72] for i in range(0, len(hexed), 72))
    return f"\nexif\n{len(blob):8d}\n{lines}\n".encode()


def png_raw_profile_orientation() -> bytes:
    """An 80×40 PNG that ImageMagick-style metadata says to rotate 90° (6)."""
    text = zlib.compress(raw_profile_exif(6))
    body = b"Raw profile type exif\x00\x00" + text
    data = make_image_bytes("PNG", (80, 40), seed=17)
    return png_insert(data, png_chunk(b"zTXt", body), before=b"IEND")


def bmp_claiming(width: int, height: int) -> bytes:
    header = struct.pack("<2sIHHI", b"BM", 54 + 16, 0, 0, 54)
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 16, 0, 0, 0, 0)
    return header + info + b"\x00" * 16


def gif_claiming(width: int, height: int) -> bytes:
    screen = struct.pack("<HHBBB", width, height, 0x80, 0, 0)
    descriptor = b"\x2c" + struct.pack("<HHHHB", 0, 0, width, height, 0)
    return b"GIF89a" + screen + b"\x00" * 6 + descriptor + b"\x02\x02\x4c\x01\x00\x3b"


def jpeg_sof_claiming(width: int, height: int) -> bytes:
    data = make_image_bytes("JPEG", (16, 16), seed=18)
    at = data.index(b"\xff\xc0") + 5
    return data[:at] + struct.pack(">HH", height, width) + data[at + 4 :]


def ico_claiming(width: int, height: int) -> bytes:
    """An ICO whose one entry is a PNG claiming width×height pixels."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    png = (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", zlib.compress(b"\x00" * 16))
        + png_chunk(b"IEND", b"")
    )
    entry = struct.pack("<BBBBHHII", 0, 0, 0, 0, 1, 32, len(png), 22)
    return struct.pack("<HHH", 0, 1, 1) + entry + png


def webp_with_xmp(xmp: bytes) -> bytes:
    data = make_image_bytes("WEBP", (40, 30), seed=19, lossless=True)
    chunks = data[12:]
    vp8x = (
        struct.pack("<4sI", b"VP8X", 10)
        + bytes((0x04, 0, 0, 0))
        + ((40 - 1).to_bytes(3, "little") + (30 - 1).to_bytes(3, "little"))
    )
    pad = b"\x00" if len(xmp) & 1 else b""
    xmp_chunk = struct.pack("<4sI", b"XMP ", len(xmp)) + xmp + pad
    body = b"WEBP" + vp8x + chunks + xmp_chunk
    return b"RIFF" + struct.pack("<I", len(body)) + body


def webp_claiming(width: int, height: int) -> bytes:
    """A small lossless WEBP behind a VP8X header claiming a width×height canvas."""
    data = make_image_bytes("WEBP", (40, 30), seed=27, lossless=True)
    vp8x = struct.pack("<4sI", b"VP8X", 10) + bytes(4)
    vp8x += (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    body = b"WEBP" + vp8x + data[12:]
    return b"RIFF" + struct.pack("<I", len(body)) + body


@dataclass(frozen=True)
class Case:
    name: str
    build: Callable[[], bytes]
    filename: str
    expect: str  # "accept" or a rejection code
    # accepted: (width, height) the upright image must have
    size: tuple[int, int] | None = None
    warning: str = ""  # a warning code the accepted file must carry


CASES = [
    Case("jpeg-app14-short-length", jpeg_app14_junk, "scan.jpg", "accept"),
    Case("gif-php-comment", lambda: gif_with_comment(PHP), "a.gif", "accept"),
    Case(
        "jpeg-exif-script",
        lambda: jpeg_insert(
            make_image_bytes("JPEG", (64, 48), seed=20),
            jpeg_segment(0xE1, exif_with(t010e=SCRIPT.decode(), t0112=1)),
        ),
        "photo.jpg",
        "accept",
    ),
    Case(
        "jpeg-comment-html",
        lambda: jpeg_insert(
            make_image_bytes("JPEG", (64, 48), seed=21),
            jpeg_segment(0xFE, b"<html><body>" + SCRIPT),
        ),
        "c.jpg",
        "accept",
    ),
    Case("jpeg-icc-script", jpeg_icc_script, "icc.jpg", "accept"),
    Case("jpeg-jfif-thumbnail-script", jpeg_jfif_thumbnail_script, "j.jpg", "accept"),
    Case(
        "jpeg-trailing-php",
        lambda: make_image_bytes("JPEG", (64, 48), seed=22) + PHP,
        "t.jpg",
        "accept",
    ),
    Case(
        "png-text-script",
        lambda: png_insert(
            make_image_bytes("PNG", (40, 30), seed=23),
            png_chunk(b"tEXt", b"Comment\x00" + SCRIPT),
        ),
        "p.png",
        "accept",
    ),
    Case(
        "png-trailing-pdf",
        lambda: make_image_bytes("PNG", (40, 30), seed=24) + b"%PDF-1.7\n1 0 obj",
        "p.png",
        "accept",
    ),
    Case(
        "webp-xmp-svg",
        lambda: webp_with_xmp(b'<svg onload="alert(1)"/>'),
        "w.webp",
        "accept",
    ),
    Case("gif-palette-html", gif_disguise, "x.gif", "polyglot"),
    Case(
        "html-named-jpg",
        lambda: b"<!doctype html><html><body>" + SCRIPT,
        "x.jpg",
        "unsupported",
    ),
    Case(
        "pdf-named-png",
        lambda: b"%PDF-1.7\n1 0 obj\n<<>>\nendobj\n",
        "x.png",
        "unsupported",
    ),
    Case(
        "svg-named-png",
        lambda: b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>',
        "x.png",
        "unsupported",
    ),
    Case("png-ztxt-bomb", png_ztxt_bomb, "z.png", "accept"),
    Case("png-iccp-bomb", png_iccp_bomb, "i.png", "accept"),
    Case(
        "bmp-header-bomb",
        lambda: bmp_claiming(100_000, 100_000),
        "b.bmp",
        "too_many_pixels",
    ),
    Case(
        "gif-header-bomb",
        lambda: gif_claiming(65_000, 65_000),
        "g.gif",
        "too_many_pixels",
    ),
    Case(
        "ico-header-bomb",
        lambda: ico_claiming(100_000, 100_000),
        "i.ico",
        "too_many_pixels",
    ),
    Case(
        "jpeg-sof-bomb",
        lambda: jpeg_sof_claiming(60_000, 60_000),
        "s.jpg",
        "too_many_pixels",
    ),
    Case(
        "webp-vp8x-bomb",
        lambda: webp_claiming(16_000, 16_000),
        "w.webp",
        "too_many_pixels",
    ),
    Case(
        "bmp-over-configured-limit",
        lambda: bmp_claiming(10_000, 9_000),
        "m.bmp",
        "too_many_pixels",
    ),
    Case("jpeg-soi-eoi-only", lambda: b"\xff\xd8\xff\xd9", "e.jpg", "corrupt"),
    Case(
        "png-raw-profile-orientation",
        png_raw_profile_orientation,
        "r.png",
        "accept",
        size=(40, 80),
    ),
    Case(
        "jpeg-named-png",
        lambda: make_image_bytes("JPEG", (64, 48), seed=25),
        "really-a-jpeg.png",
        "accept",
        warning="extension_mismatch",
    ),
    Case(
        "webp-named-jpg",
        lambda: make_image_bytes("WEBP", (64, 48), seed=26),
        "really-a-webp.jpg",
        "accept",
        warning="extension_mismatch",
    ),
]

REPR = re.compile(r"object at 0x|<_io\.|<PIL\.|Traceback")


def verdict_problems(
    case: Case, data: bytes, run: Callable[[bytes, str], object]
) -> list[str]:
    """What is wrong with the verdict `run` (inspect_image) gives `case`."""
    from albums.ingest import ImageRejected

    problems = []
    try:
        inspected = run(data, case.filename)
    except ImageRejected as exc:
        if exc.code != case.expect:
            problems.append(f"rejected {exc.code}: {exc.reason}")
        if REPR.search(exc.reason):
            problems.append(f"object repr in reason: {exc.reason}")
        if exc.code == "too_many_pixels" and "80,000,000" not in exc.reason:
            problems.append(f"does not quote the configured limit: {exc.reason}")
        return problems
    if case.expect != "accept":
        problems.append(f"accepted, expected {case.expect}")
    stored = inspected.data  # type: ignore[attr-defined]
    if PAYLOAD.search(stored):
        problems.append("the stored bytes carry the payload")
    if case.size and (inspected.width, inspected.height) != case.size:  # type: ignore[attr-defined]
        problems.append(
            f"size {inspected.width}x{inspected.height}, expected {case.size}"
        )  # type: ignore[attr-defined]
    codes = [w["code"] for w in getattr(inspected, "warnings", [])]
    if case.warning and case.warning not in codes:
        problems.append(f"no {case.warning} warning")
    return problems


def main() -> None:  # pragma: no cover - the measurement for the issue's table
    import os
    import time

    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "imagineer_project.settings")
    django.setup()
    from albums.ingest import inspect_image

    right = 0
    for case in CASES:
        data = case.build()
        start = time.monotonic()
        problems = verdict_problems(case, data, inspect_image)
        took = time.monotonic() - start
        right += not problems
        mark = "ok " if not problems else "BAD"
        print(f"{mark} {case.name:30} {took:5.2f}s {'; '.join(problems)[:160]}")  # noqa: T201
    print(f"verdicts right: {right}/{len(CASES)}")  # noqa: T201


if __name__ == "__main__":  # pragma: no cover
    main()
