"""Lossless metadata stripping for the image formats we accept.

Stored images must carry no payload in their metadata, but a dataset tool must
not re-encode (and degrade) its data. So each format's container is walked and
rebuilt: pixel data and the chunks that change how pixels look (colour
profiles, transparency, animation timing, EXIF orientation) are kept byte for
byte; text, XMP, comments, unknown chunks and anything after the end marker are
dropped. A kept block that could still carry a payload is rebuilt from its
meaningful fields (a JFIF header without its thumbnail, the Adobe flags, a GIF
loop count) or dropped when it holds a document marker (a colour profile with a
script in it). So no stored file carries a script in its metadata, whatever the
format; the caller refuses only files whose header or pixels read as a document.

Compressed chunks are never inflated, except two, each through a cap
(INFLATE_LIMIT): a PNG iCCP profile (dropped when it inflates past the cap or
is not a profile) and a PNG "Raw profile type exif" text chunk, read for its
orientation only. A zlib bomb in a PNG text chunk is therefore dropped, never
inflated; the file is accepted without it.
"""

from __future__ import annotations

import io
import re
import struct
import zlib
from dataclasses import dataclass

from PIL import Image as PILImage

# Markers of documents a browser, reader or interpreter would act on.
DOCUMENT_MARKERS = re.compile(
    rb"<\s*(?:script|html|svg|iframe|body|object|embed)\b|<!doctype\s+html|%PDF-|<\?php",
    re.IGNORECASE,
)
# The most a kept compressed chunk may inflate to (an ICC profile, raw EXIF).
INFLATE_LIMIT = 4 * 1024 * 1024


class MalformedContainer(ValueError):
    """The file's structure is broken (truncated segment, bad length...)."""


@dataclass(frozen=True)
class Sanitized:
    data: bytes


def sanitize(data: bytes, fmt: str) -> Sanitized:
    walkers = {"JPEG": _jpeg, "PNG": _png, "WEBP": _webp, "GIF": _gif, "BMP": _bmp}
    return walkers[fmt](data)


def inflate_bounded(data: bytes, limit: int = INFLATE_LIMIT) -> bytes | None:
    """zlib-inflate at most `limit` bytes; None if it is larger or broken."""
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(data, limit + 1)
    except zlib.error:
        return None
    return None if len(out) > limit else out


def minimal_exif(exif_payload: bytes) -> bytes | None:
    """An EXIF block holding only the orientation tag, or None if upright."""
    exif = PILImage.Exif()
    try:
        exif.load(exif_payload)
    except Exception:  # unparseable EXIF carries no orientation we can trust
        return None
    orientation = exif.get(0x0112)
    if not isinstance(orientation, int) or orientation in (0, 1) or orientation > 8:
        return None
    clean = PILImage.Exif()
    clean[0x0112] = orientation
    return clean.tobytes()


# --- JPEG -----------------------------------------------------------------------

_SOS, _EOI = 0xDA, 0xD9
_STANDALONE = {0x01, *range(0xD0, 0xD8)}


def _jpeg(data: bytes) -> Sanitized:
    parts: list[tuple[int, bytes]] = []  # (marker, bytes to write)
    pos, end = 2, len(data)
    while pos < end:
        if data[pos] != 0xFF:
            # Junk where a marker should be (e.g. an APPn whose length is
            # short): libjpeg and Pillow skip to the next marker; so do we,
            # and the junk is not kept.
            nxt = data.find(b"\xff", pos)
            if nxt < 0:
                raise MalformedContainer("JPEG ends without an end-of-image marker")
            pos = nxt
        while pos < end and data[pos] == 0xFF:  # fill bytes
            pos += 1
        if pos >= end:
            break
        marker = data[pos]
        pos += 1
        if marker == _EOI:
            return Sanitized(_jpeg_join(parts) + b"\xff\xd9")
        if marker in _STANDALONE:
            parts.append((marker, bytes((0xFF, marker))))
            continue
        if pos + 2 > end:
            raise MalformedContainer("truncated JPEG segment")
        length = struct.unpack(">H", data[pos : pos + 2])[0]
        if length < 2 or pos + length > end:
            raise MalformedContainer("bad JPEG segment length")
        segment = data[pos + 2 : pos + length]
        pos += length
        kept = _jpeg_keep(marker, segment)
        if kept is not None:
            header = bytes((0xFF, marker)) + struct.pack(">H", len(kept) + 2)
            parts.append((marker, header + kept))
        if marker == _SOS:
            scan_end = _jpeg_scan_end(data, pos)
            parts.append((-1, data[pos:scan_end]))
            pos = scan_end
    raise MalformedContainer("JPEG ends without an end-of-image marker")


def _jpeg_join(parts: list[tuple[int, bytes]]) -> bytes:
    """SOI and the kept parts. A colour profile split over several APP2
    segments is kept whole or, if any piece holds a document marker, not at all."""
    icc = b"".join(p for m, p in parts if m == 0xE2)
    drop_icc = bool(DOCUMENT_MARKERS.search(icc))
    return b"\xff\xd8" + b"".join(p for m, p in parts if not (drop_icc and m == 0xE2))


def _jpeg_keep(marker: int, segment: bytes) -> bytes | None:
    if marker == 0xE1 and segment.startswith(b"Exif\x00\x00"):
        return minimal_exif(segment)
    if marker == 0xE0 and segment.startswith(b"JFIF\x00") and len(segment) >= 12:
        return segment[:12] + b"\x00\x00"  # density kept; the thumbnail is not
    if marker == 0xE2 and segment.startswith(b"ICC_PROFILE\x00"):
        return segment
    if marker == 0xEE and segment.startswith(b"Adobe"):  # colour transform flag
        return segment[:12]
    if 0xE0 <= marker <= 0xEF or marker == 0xFE:  # other APPn, JFXX, comments
        return None
    return segment


def _jpeg_scan_end(data: bytes, pos: int) -> int:
    """Index of the first real marker after entropy-coded data."""
    while True:
        pos = data.find(b"\xff", pos)
        if pos < 0 or pos + 1 >= len(data):
            raise MalformedContainer("JPEG scan data is truncated")
        nxt = data[pos + 1]
        if nxt == 0x00 or 0xD0 <= nxt <= 0xD7 or nxt == 0xFF:
            pos += 1
            continue
        return pos


# --- PNG ------------------------------------------------------------------------

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_KEEP = {
    b"IHDR",
    b"PLTE",
    b"IDAT",
    b"IEND",
    b"tRNS",
    b"gAMA",
    b"cHRM",
    b"sRGB",
    b"iCCP",
    b"sBIT",
    b"pHYs",
    b"bKGD",
    b"cICP",
    b"mDCV",
    b"cLLI",
    b"acTL",
    b"fcTL",
    b"fdAT",
}


_RAW_EXIF = b"Raw profile type exif"


def _png(data: bytes) -> Sanitized:
    chunks: list[tuple[bytes, bytes]] = []  # (type, whole chunk)
    orientation_exif: bytes | None = None  # a TIFF block for eXIf
    pos = len(_PNG_SIGNATURE)
    while pos + 8 <= len(data):
        length, ctype = struct.unpack(">I4s", data[pos : pos + 8])
        chunk_end = pos + 12 + length
        if chunk_end > len(data):
            raise MalformedContainer("truncated PNG chunk")
        body = data[pos + 8 : pos + 8 + length]
        if ctype == b"iCCP" and not _png_profile_ok(body):
            pass  # dropped
        elif ctype in _PNG_KEEP:
            chunks.append((ctype, data[pos:chunk_end]))
        elif ctype == b"eXIf":
            if exif := minimal_exif(b"Exif\x00\x00" + body):
                orientation_exif = exif[6:]
        elif orientation_exif is None and ctype in (b"tEXt", b"zTXt", b"iTXt"):
            orientation_exif = _png_raw_profile_exif(ctype, body)
        pos = chunk_end
        if ctype == b"IEND":
            return Sanitized(_png_join(chunks, orientation_exif))
    raise MalformedContainer("PNG ends without an IEND chunk")


def _png_join(chunks: list[tuple[bytes, bytes]], exif: bytes | None) -> bytes:
    """The kept chunks; the orientation (from eXIf or a raw profile) goes in
    one eXIf chunk before the first image data, where readers look for it."""
    out = bytearray(_PNG_SIGNATURE)
    for ctype, chunk in chunks:
        if exif is not None and ctype in (b"IDAT", b"fdAT", b"fcTL", b"IEND"):
            out += _png_chunk(b"eXIf", exif)
            exif = None
        out += chunk
    return bytes(out)


def _png_profile_ok(body: bytes) -> bool:
    """An iCCP chunk worth keeping: it inflates within the cap to an ICC
    profile ('acsp' signature) holding no document marker."""
    name_end = body.find(b"\x00")
    if name_end < 0 or name_end + 2 > len(body):
        return False
    profile = inflate_bounded(body[name_end + 2 :])
    return (
        profile is not None
        and profile[36:40] == b"acsp"
        and not DOCUMENT_MARKERS.search(profile)
    )


def _png_raw_profile_exif(ctype: bytes, body: bytes) -> bytes | None:
    """The orientation from an ImageMagick "Raw profile type exif" text chunk
    (hex-encoded EXIF), as a TIFF block for eXIf; None when there is none."""
    keyword, _, rest = body.partition(b"\x00")
    if keyword != _RAW_EXIF:
        return None
    if ctype == b"tEXt":
        text: bytes | None = rest
    elif ctype == b"zTXt":
        text = inflate_bounded(rest[1:])
    else:  # iTXt: compression flag, method, language\0, translated keyword\0
        flag = rest[:1]
        parts = rest[2:].split(b"\x00", 2)
        if len(parts) < 3:
            return None
        text = inflate_bounded(parts[2]) if flag == b"\x01" else parts[2]
    if text is None:
        return None
    lines = text.split(b"\n")
    try:
        blob = bytes.fromhex(b"".join(lines[3:]).decode("ascii"))
    except (ValueError, UnicodeDecodeError):
        return None
    if not blob.startswith(b"Exif\x00\x00"):
        blob = b"Exif\x00\x00" + blob
    exif = minimal_exif(blob)
    return exif[6:] if exif else None


def _png_chunk(ctype: bytes, body: bytes) -> bytes:
    crc = zlib.crc32(ctype + body) & 0xFFFFFFFF
    return struct.pack(">I", len(body)) + ctype + body + struct.pack(">I", crc)


# --- WEBP -----------------------------------------------------------------------

_WEBP_KEEP = {b"VP8 ", b"VP8L", b"VP8X", b"ALPH", b"ANIM", b"ANMF", b"ICCP"}


def _webp(data: bytes) -> Sanitized:
    if len(data) < 12:
        raise MalformedContainer("truncated WEBP header")
    riff_size = struct.unpack("<I", data[4:8])[0]
    end = 8 + riff_size
    if end > len(data):
        raise MalformedContainer("truncated WEBP file")
    chunks = bytearray()
    pos = 12
    while pos + 8 <= end:
        fourcc, size = struct.unpack("<4sI", data[pos : pos + 8])
        padded = size + (size & 1)
        if pos + 8 + size > end:
            raise MalformedContainer("truncated WEBP chunk")
        chunk = bytearray(data[pos : pos + 8 + padded])
        if fourcc == b"ICCP" and DOCUMENT_MARKERS.search(chunk):
            fourcc = b"drop"  # a profile carrying a script is not a profile we keep
        if fourcc in _WEBP_KEEP:
            chunks += chunk
        pos += 8 + padded
    if chunks[:4] == b"VP8X" and len(chunks) >= 9:
        # Clear the EXIF and XMP flags (dropped), and ICC's when it went too.
        clear = 0x08 | 0x04 | (0 if b"ICCP" in _webp_fourccs(chunks) else 0x20)
        chunks[8] &= ~clear & 0xFF
    header = b"RIFF" + struct.pack("<I", len(chunks) + 4) + b"WEBP"
    return Sanitized(header + bytes(chunks))


def _webp_fourccs(chunks: bytes) -> set[bytes]:
    found, pos = set(), 0
    while pos + 8 <= len(chunks):
        fourcc, size = struct.unpack("<4sI", chunks[pos : pos + 8])
        found.add(fourcc)
        pos += 8 + size + (size & 1)
    return found


# --- GIF ------------------------------------------------------------------------

_GIF_LOOP_APPS = (b"NETSCAPE2.0", b"ANIMEXTS1.0")


def _gif(data: bytes) -> Sanitized:
    if len(data) < 13:
        raise MalformedContainer("truncated GIF header")
    flags = data[10]
    pos = 13 + (3 * 2 ** ((flags & 7) + 1) if flags & 0x80 else 0)
    out = bytearray(data[:pos])
    while pos < len(data):
        block = data[pos]
        if block == 0x3B:  # trailer
            out.append(0x3B)
            return Sanitized(bytes(out))
        if block == 0x21:
            if pos + 2 > len(data):
                break
            label = data[pos + 1]
            blocks_end = _gif_sub_blocks_end(data, pos + 2)
            ext = data[pos:blocks_end]
            app_id = data[pos + 3 : pos + 14] if label == 0xFF else b""
            kept = _gif_rebuilt(label, app_id, ext)
            if kept is not None:
                out += kept
            pos = blocks_end
        elif block == 0x2C:
            if pos + 10 > len(data):
                break
            local = data[pos + 9]
            start = pos
            pos += 10 + (3 * 2 ** ((local & 7) + 1) if local & 0x80 else 0)
            pos = _gif_sub_blocks_end(data, pos + 1)  # skip LZW minimum code size
            out += data[start:pos]
        else:
            raise MalformedContainer("unknown GIF block")
    raise MalformedContainer("GIF ends without a trailer")


def _gif_rebuilt(label: int, app_id: bytes, ext: bytes) -> bytes | None:
    """A kept extension rebuilt from its meaningful fields only (extra
    sub-blocks could carry anything); None for one we drop (comments, plain
    text, other applications)."""
    if label == 0xF9 and len(ext) >= 7 and ext[2] == 4:  # graphic control
        return ext[:7] + b"\x00"
    if app_id in _GIF_LOOP_APPS and len(ext) >= 19 and ext[14] >= 3:
        return ext[:14] + b"\x03" + ext[15:18] + b"\x00"  # the loop count
    return None


def _gif_sub_blocks_end(data: bytes, pos: int) -> int:
    while True:
        if pos >= len(data):
            raise MalformedContainer("truncated GIF data")
        size = data[pos]
        pos += 1 + size
        if size == 0:
            return pos


# --- BMP ------------------------------------------------------------------------


def _bmp(data: bytes) -> Sanitized:
    """BMP has no metadata chunks worth walking; a lossless re-save in the same
    format keeps every pixel and drops any trailing or gap payload."""
    with PILImage.open(io.BytesIO(data), formats=["BMP"]) as im:
        im.load()
        if im.mode not in ("1", "L", "P", "RGB", "RGBA"):
            im = im.convert("RGBA" if "A" in im.getbands() else "RGB")
        buf = io.BytesIO()
        im.save(buf, "BMP")
    return Sanitized(buf.getvalue())
