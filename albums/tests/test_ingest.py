"""Upload hardening: every rejection built from real bad files, and lossless
metadata stripping checked pixel for pixel."""

from __future__ import annotations

import io
import struct
import time
import zlib

import pytest
from PIL import Image as PILImage
from PIL import ImageChops

from albums.ingest import ImageRejected, hamming, inspect_image, safe_display_name
from albums.tests import hostile
from imagineer_project.testing import make_image_bytes


def _png_chunk(ctype: bytes, body: bytes) -> bytes:
    crc = zlib.crc32(ctype + body) & 0xFFFFFFFF
    return struct.pack(">I", len(body)) + ctype + body + struct.pack(">I", crc)


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width×height pixels (a decompression bomb)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 16)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )


def rejection(data: bytes, filename: str | None = None) -> str:
    with pytest.raises(ImageRejected) as err:
        inspect_image(data, filename)
    assert err.value.reason  # every rejection says why
    return err.value.code


def pixels_equal(a: bytes, b: bytes) -> bool:
    with PILImage.open(io.BytesIO(a)) as x, PILImage.open(io.BytesIO(b)) as y:
        x, y = x.convert("RGBA"), y.convert("RGBA")
        return x.size == y.size and ImageChops.difference(x, y).getbbox() is None


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "GIF", "BMP"])
def test_each_allowed_format_is_accepted_without_pixel_change(fmt: str) -> None:
    data = make_image_bytes(fmt, (80, 60), seed=1)
    inspected = inspect_image(data, f"photo.{fmt.lower()}")
    assert (inspected.format, inspected.width, inspected.height) == (fmt, 80, 60)
    assert set(inspected.thumbnails) == {256}
    assert pixels_equal(data, inspected.data)


def test_jpeg_bytes_are_kept_exactly_when_there_is_no_metadata() -> None:
    data = make_image_bytes("JPEG", (120, 90), seed=3)
    assert inspect_image(data, "a.jpg").data == data


def test_zero_bytes_is_rejected() -> None:
    assert rejection(b"", "empty.jpg") == "empty"


def test_text_renamed_png_is_rejected() -> None:
    assert (
        rejection(b"just some notes, not a picture\n" * 10, "notes.png")
        == "unsupported"
    )


def test_a_wrong_extension_is_a_warning_and_the_content_decides() -> None:
    inspected = inspect_image(make_image_bytes("JPEG", seed=4), "photo.png")
    assert inspected.format == "JPEG"
    assert inspected.warnings == [
        {
            "code": "extension_mismatch",
            "message": "named .png, content is JPEG; stored as .jpg",
        }
    ]


def test_a_non_image_extension_on_image_content_is_a_warning_too() -> None:
    inspected = inspect_image(make_image_bytes("JPEG", seed=4), "photo.exe")
    assert inspected.format == "JPEG"
    assert [w["code"] for w in inspected.warnings] == ["extension_mismatch"]


def test_a_right_extension_warns_nothing() -> None:
    assert inspect_image(make_image_bytes("JPEG", seed=4), "photo.JPEG").warnings == []


def test_missing_extension_is_fine_content_decides() -> None:
    assert inspect_image(make_image_bytes("PNG", seed=5), "download").format == "PNG"


def test_truncated_jpeg_is_rejected_as_corrupt() -> None:
    data = make_image_bytes("JPEG", (300, 200), seed=2)
    assert rejection(data[: len(data) // 2], "half.jpg") == "corrupt"


def test_truncated_png_is_rejected_as_corrupt() -> None:
    data = make_image_bytes("PNG", (300, 200), seed=2)
    assert rejection(data[: len(data) - 40], "cut.png") == "corrupt"


def test_corrupt_pixel_data_fails_the_full_decode() -> None:
    data = bytearray(make_image_bytes("PNG", (64, 64), seed=6))
    idat = data.index(b"IDAT")
    for i in range(idat + 8, idat + 40):  # scramble compressed data, keep the CRC wrong
        data[i] ^= 0x5A
    assert rejection(bytes(data), "bad.png") == "corrupt"


def test_png_header_claiming_100k_by_100k_is_rejected_before_decoding() -> None:
    assert rejection(png_claiming(100_000, 100_000), "bomb.png") == "too_many_pixels"


def test_oversized_file_is_rejected(settings) -> None:
    settings.IMAGINEER_MAX_UPLOAD_BYTES = 1000
    assert (
        rejection(make_image_bytes("BMP", (100, 100), seed=7), "big.bmp") == "too_large"
    )


@pytest.mark.parametrize(
    "document",
    [
        b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
        b"<?xml version='1.0'?><svg xmlns='http://www.w3.org/2000/svg'/>",
        b"%PDF-1.7\n1 0 obj<<>>endobj\n%%EOF",
        b"<!DOCTYPE html><html><body>hi</body></html>",
    ],
)
def test_documents_are_rejected(document: bytes) -> None:
    assert rejection(document, "picture.jpg") == "unsupported"


def test_html_hidden_in_a_jpeg_comment_is_stripped_not_stored() -> None:
    data = make_image_bytes("JPEG", seed=8)
    comment = b"<script>alert(document.cookie)</script>"
    payload = b"\xff\xfe" + struct.pack(">H", len(comment) + 2) + comment
    inspected = inspect_image(data[:2] + payload + data[2:], "x.jpg")
    assert inspected.data == data  # the photo, byte for byte, without the comment


def test_pdf_appended_after_png_end_is_cut_off() -> None:
    data = make_image_bytes("PNG", seed=9)
    inspected = inspect_image(data + b"%PDF-1.4\n1 0 obj<<>>endobj", "x.png")
    assert b"%PDF" not in inspected.data
    assert pixels_equal(data, inspected.data)


def test_html_in_a_png_text_chunk_is_dropped() -> None:
    data = make_image_bytes("PNG", seed=10)
    chunk = _png_chunk(b"tEXt", b"Comment\x00<html><script>x()</script></html>")
    inspected = inspect_image(data[:33] + chunk + data[33:], "x.png")
    assert b"<script>" not in inspected.data and b"tEXt" not in inspected.data
    assert pixels_equal(data, inspected.data)


@pytest.mark.parametrize("case", hostile.CASES, ids=[c.name for c in hostile.CASES])
def test_hostile_and_odd_files_get_the_right_verdict(case: hostile.Case) -> None:
    """Accepted files keep no payload and their upright size; rejected ones get
    the right code, a reason with no object repr, and bombs quote our limit."""
    data = case.build()
    assert hostile.verdict_problems(case, data, inspect_image) == []


def test_a_jpeg_with_a_short_app14_is_the_photo_pillow_decodes() -> None:
    data = hostile.jpeg_app14_junk()
    with PILImage.open(io.BytesIO(data)) as original:
        original.load()  # Pillow (libjpeg) reads the whole image
        assert pixels_equal(data, inspect_image(data, "scan.jpg").data)


def test_a_gif_comment_with_php_is_not_stored() -> None:
    data = hostile.gif_with_comment(hostile.PHP)
    inspected = inspect_image(data, "a.gif")
    assert inspected.data != data and b"<?php" not in inspected.data
    assert pixels_equal(data, inspected.data)


def test_png_ztxt_bomb_is_dropped_without_inflating_it() -> None:
    data = hostile.png_ztxt_bomb()
    started = time.process_time()
    inspected = inspect_image(data, "z.png")
    assert time.process_time() - started < 2  # 200 MB were never inflated
    assert b"zTXt" not in inspected.data and len(inspected.data) < 10_000


def test_a_colour_profile_that_is_a_zlib_bomb_is_dropped() -> None:
    inspected = inspect_image(hostile.png_iccp_bomb(), "i.png")
    assert b"iCCP" not in inspected.data


def test_a_real_colour_profile_is_kept() -> None:
    from PIL import ImageCms

    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    data = make_image_bytes("PNG", (40, 30), seed=30, icc_profile=icc)
    assert b"iCCP" in inspect_image(data, "c.png").data


def test_raw_profile_exif_orientation_in_a_png_is_applied() -> None:
    inspected = inspect_image(hostile.png_raw_profile_orientation(), "r.png")
    assert (inspected.width, inspected.height) == (40, 80)  # turned upright
    assert b"Raw profile" not in inspected.data  # the text chunk itself is gone
    with PILImage.open(io.BytesIO(inspected.data)) as stored:
        assert stored.getexif().get(0x0112) == 6  # only the orientation is kept


@pytest.mark.parametrize(
    ("build", "fmt"),
    [
        (lambda: hostile.bmp_claiming(100_000, 100_000), "BMP"),
        (lambda: hostile.gif_claiming(65_000, 65_000), "GIF"),
        (lambda: hostile.jpeg_sof_claiming(60_000, 60_000), "JPEG"),
        (lambda: hostile.ico_claiming(100_000, 100_000), "ICO"),
        (lambda: hostile.webp_claiming(16_000, 16_000), "WEBP"),
    ],
)
def test_header_pixel_bombs_quote_the_configured_limit(build, fmt, settings) -> None:
    settings.IMAGINEER_MAX_IMAGE_PIXELS = 1_234_567
    with pytest.raises(ImageRejected) as err:
        inspect_image(build(), "bomb")
    assert err.value.code == "too_many_pixels"
    assert "1,234,567" in err.value.reason
    reason = err.value.reason.replace(",", "")
    assert "178956970" not in reason and "89478485" not in reason  # not Pillow's


def test_no_reason_carries_an_object_repr() -> None:
    with pytest.raises(ImageRejected) as err:
        inspect_image(b"\xff\xd8\xff\xd9", "e.jpg")
    assert "0x" not in err.value.reason and "_io" not in err.value.reason


def test_jpeg_metadata_is_stripped_but_orientation_kept() -> None:
    im = PILImage.new("RGB", (80, 40), (200, 30, 30))
    exif = PILImage.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    exif[0x010F] = "SecretCam"  # Make
    exif[0x9286] = "payload in a user comment"
    buf = io.BytesIO()
    im.save(buf, "JPEG", exif=exif.tobytes(), comment=b"a harmless comment")
    original = buf.getvalue()

    inspected = inspect_image(original, "rotated.jpg")

    assert b"SecretCam" not in inspected.data
    assert b"harmless comment" not in inspected.data
    with PILImage.open(io.BytesIO(inspected.data)) as stored:
        assert dict(stored.getexif()) == {0x0112: 6}
    assert (inspected.width, inspected.height) == (40, 80)  # displayed upright
    assert pixels_equal(original, inspected.data)


def test_png_text_chunks_are_stripped_pixels_kept() -> None:
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("Author", "someone@example.com")
    original = make_image_bytes("PNG", (50, 50), seed=11, pnginfo=info)
    inspected = inspect_image(original, "a.png")
    assert b"someone@example.com" not in inspected.data
    assert pixels_equal(original, inspected.data)


def test_webp_exif_and_xmp_are_stripped() -> None:
    exif = PILImage.Exif()
    exif[0x010F] = "SecretCam"
    original = make_image_bytes(
        "WEBP",
        (40, 40),
        seed=12,
        lossless=True,
        exif=exif.tobytes(),
        xmp=b"<x:xmpmeta>secret</x:xmpmeta>",
    )
    inspected = inspect_image(original, "a.webp")
    assert b"SecretCam" not in inspected.data and b"xmpmeta" not in inspected.data
    assert pixels_equal(original, inspected.data)


def test_animated_gif_keeps_its_frames_and_hashes_frame_zero() -> None:
    frames = [PILImage.new("RGB", (30, 30), (i * 80, 0, 0)) for i in range(3)]
    buf = io.BytesIO()
    frames[0].save(
        buf,
        "GIF",
        save_all=True,
        append_images=frames[1:],
        loop=0,
        duration=80,
        comment=b"drop me",
    )
    inspected = inspect_image(buf.getvalue(), "anim.gif")
    assert inspected.is_animated
    assert b"drop me" not in inspected.data
    with PILImage.open(io.BytesIO(inspected.data)) as stored:
        assert stored.n_frames == 3


def test_sanitising_is_deterministic_so_duplicates_share_a_hash() -> None:
    data = make_image_bytes("PNG", seed=13)
    assert inspect_image(data).sha256 == inspect_image(data).sha256


def test_similar_images_have_close_perceptual_hashes() -> None:
    a = make_image_bytes("PNG", (200, 200), seed=14)
    b = make_image_bytes(
        "JPEG", (100, 100), seed=14, quality=70
    )  # same picture, smaller
    c = make_image_bytes("PNG", (200, 200), seed=99)
    ha, hb, hc = (inspect_image(x).phash for x in (a, b, c))
    assert hamming(ha, hb) <= 6 < hamming(ha, hc)


@pytest.mark.parametrize(
    ("given", "shown"),
    [
        ("../../etc/passwd.jpg", "passwd.jpg"),
        ("C:\\Users\\me\\cat.png", "cat.png"),
        ("evil\x00name.png", "evilname.png"),
        (None, ""),
    ],
)
def test_filenames_are_reduced_to_a_display_name(given: str | None, shown: str) -> None:
    assert safe_display_name(given) == shown
