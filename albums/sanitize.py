"""Lossless metadata stripping for the image formats we accept.

Stored images must carry no payload in their metadata, but a dataset tool must
not re-encode (and degrade) its data. So each format's container is walked and
rebuilt: pixel data and the chunks that change how pixels look (colour
profiles, transparency, animation timing, EXIF orientation) are kept byte for
byte; text, XMP, comments, unknown chunks and anything after the end marker are
dropped. The dropped bytes are returned too, so the caller can look in them for
smuggled documents (HTML, SVG, PDF).
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass

from PIL import Image as PILImage


class MalformedContainer(ValueError):
    """The file's structure is broken (truncated segment, bad length...)."""


@dataclass(frozen=True)
class Sanitized:
    data: bytes
    dropped: bytes


def sanitize(data: bytes, fmt: str) -> Sanitized:
    walkers = {"JPEG": _jpeg, "PNG": _png, "WEBP": _webp, "GIF": _gif, "BMP": _bmp}
    return walkers[fmt](data)


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
    out, dropped = bytearray(b"\xff\xd8"), bytearray()
    pos, end = 2, len(data)
    while pos < end:
        if data[pos] != 0xFF:
            raise MalformedContainer("JPEG marker expected")
        while pos < end and data[pos] == 0xFF:  # fill bytes
            pos += 1
        if pos >= end:
            break
        marker = data[pos]
        pos += 1
        if marker == _EOI:
            out += b"\xff\xd9"
            dropped += data[pos:]
            return Sanitized(bytes(out), bytes(dropped))
        if marker in _STANDALONE:
            out += bytes((0xFF, marker))
            continue
        if pos + 2 > end:
            raise MalformedContainer("truncated JPEG segment")
        length = struct.unpack(">H", data[pos : pos + 2])[0]
        if length < 2 or pos + length > end:
            raise MalformedContainer("bad JPEG segment length")
        segment = data[pos + 2 : pos + length]
        pos += length
        kept = _jpeg_keep(marker, segment)
        if kept is None:
            dropped += segment
        else:
            out += bytes((0xFF, marker)) + struct.pack(">H", len(kept) + 2) + kept
        if marker == _SOS:
            scan_end = _jpeg_scan_end(data, pos)
            out += data[pos:scan_end]
            pos = scan_end
    raise MalformedContainer("JPEG ends without an end-of-image marker")


def _jpeg_keep(marker: int, segment: bytes) -> bytes | None:
    if marker == 0xE1 and segment.startswith(b"Exif\x00\x00"):
        return minimal_exif(segment)
    if marker == 0xE0 and segment.startswith((b"JFIF\x00", b"JFXX\x00")):
        return segment
    if marker == 0xE2 and segment.startswith(b"ICC_PROFILE\x00"):
        return segment
    if marker == 0xEE and segment.startswith(b"Adobe"):  # colour transform flag
        return segment
    if 0xE0 <= marker <= 0xEF or marker == 0xFE:  # other APPn, comments
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


def _png(data: bytes) -> Sanitized:
    out, dropped = bytearray(_PNG_SIGNATURE), bytearray()
    pos = len(_PNG_SIGNATURE)
    while pos + 8 <= len(data):
        length, ctype = struct.unpack(">I4s", data[pos : pos + 8])
        chunk_end = pos + 12 + length
        if chunk_end > len(data):
            raise MalformedContainer("truncated PNG chunk")
        body = data[pos + 8 : pos + 8 + length]
        if ctype in _PNG_KEEP:
            out += data[pos:chunk_end]
        elif ctype == b"eXIf" and (exif := minimal_exif(b"Exif\x00\x00" + body)):
            tiff = exif[6:]
            out += _png_chunk(b"eXIf", tiff)
        else:
            dropped += body
        pos = chunk_end
        if ctype == b"IEND":
            dropped += data[pos:]
            return Sanitized(bytes(out), bytes(dropped))
    raise MalformedContainer("PNG ends without an IEND chunk")


def _png_chunk(ctype: bytes, body: bytes) -> bytes:
    import zlib

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
    chunks, dropped = bytearray(), bytearray(data[end:])
    pos = 12
    while pos + 8 <= end:
        fourcc, size = struct.unpack("<4sI", data[pos : pos + 8])
        padded = size + (size & 1)
        if pos + 8 + size > end:
            raise MalformedContainer("truncated WEBP chunk")
        chunk = bytearray(data[pos : pos + 8 + padded])
        if fourcc == b"VP8X" and size >= 1:
            chunk[8] &= ~(0x08 | 0x04) & 0xFF  # we drop EXIF and XMP: clear their flags
        if fourcc in _WEBP_KEEP:
            chunks += chunk
        else:
            dropped += chunk[8:]
        pos += 8 + padded
    header = b"RIFF" + struct.pack("<I", len(chunks) + 4) + b"WEBP"
    return Sanitized(header + bytes(chunks), bytes(dropped))


# --- GIF ------------------------------------------------------------------------

_GIF_LOOP_APPS = (b"NETSCAPE2.0", b"ANIMEXTS1.0")


def _gif(data: bytes) -> Sanitized:
    if len(data) < 13:
        raise MalformedContainer("truncated GIF header")
    flags = data[10]
    pos = 13 + (3 * 2 ** ((flags & 7) + 1) if flags & 0x80 else 0)
    out, dropped = bytearray(data[:pos]), bytearray()
    while pos < len(data):
        block = data[pos]
        if block == 0x3B:  # trailer
            out.append(0x3B)
            dropped += data[pos + 1 :]
            return Sanitized(bytes(out), bytes(dropped))
        if block == 0x21:
            if pos + 2 > len(data):
                break
            label = data[pos + 1]
            blocks_end = _gif_sub_blocks_end(data, pos + 2)
            ext = data[pos:blocks_end]
            app_id = data[pos + 3 : pos + 14] if label == 0xFF else b""
            if label in (0xF9, 0x01) or app_id in _GIF_LOOP_APPS:
                out += ext
            else:
                dropped += ext
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
    return Sanitized(buf.getvalue(), data)
