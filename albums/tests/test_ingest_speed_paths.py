"""The fast ingest path (one decode turned, converted and shrunk in place, no
copies) gives exactly what the plain Pillow recipe gives: the same size,
thumbnail bytes and perceptual hash, for every kind of pixel data; and an
image's row and album link are written together."""

from __future__ import annotations

import io

import imagehash
import pytest
from PIL import Image as PILImage
from PIL import ImageOps

from albums import services
from albums.ingest import inspect_image, render_thumbnail
from albums.models import Image
from albums.services import image_ingest
from albums.tests.builders import make_album


def _encoded(im: PILImage.Image, fmt: str, **params: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **params)
    return buf.getvalue()


def _gradient(mode: str, size: tuple[int, int] = (640, 360)) -> PILImage.Image:
    rgb = PILImage.linear_gradient("L").resize(size).convert("RGB")
    rgb.paste((200, 30, 90), (40, 20, 200, 120))  # a block that shows turns
    return rgb.convert(mode)


def _oriented_jpeg(orientation: int) -> bytes:
    exif = PILImage.Exif()
    exif[0x0112] = orientation
    return _encoded(_gradient("RGB"), "JPEG", quality=90, exif=exif.tobytes())


def _palette_png_with_transparency() -> bytes:
    im = _gradient("RGB").quantize(16)
    return _encoded(im, "PNG", transparency=0)


def _animated_gif() -> bytes:
    frames = [_gradient("RGB").rotate(a).convert("P") for a in (0, 90, 180)]
    return _encoded(frames[0], "GIF", save_all=True, append_images=frames[1:])


CASES = {
    "rgb jpeg": lambda: _encoded(_gradient("RGB"), "JPEG", quality=90),
    "jpeg turned 90 (6)": lambda: _oriented_jpeg(6),
    "jpeg mirrored and turned (5)": lambda: _oriented_jpeg(5),
    "jpeg upside down (3)": lambda: _oriented_jpeg(3),
    "greyscale jpeg": lambda: _encoded(_gradient("L"), "JPEG", quality=90),
    "cmyk jpeg": lambda: _encoded(_gradient("CMYK"), "JPEG", quality=90),
    "rgba png": lambda: _encoded(_gradient("RGBA"), "PNG"),
    "palette png, transparent": _palette_png_with_transparency,
    "animated gif": _animated_gif,
    "webp": lambda: _encoded(_gradient("RGB"), "WEBP", quality=90),
}


def _reference(data: bytes) -> tuple[tuple[int, int], bytes, int]:
    """The plain recipe: every step on its own copy, as Pillow's docs show it."""
    with PILImage.open(io.BytesIO(data)) as im:
        im.load()
        upright = ImageOps.exif_transpose(im)
    has_alpha = upright.mode in ("RGBA", "LA", "PA") or (
        upright.mode == "P" and "transparency" in upright.info
    )
    working = upright.convert("RGBA" if has_alpha else "RGB")
    working.thumbnail((256, 256), PILImage.Resampling.BICUBIC, reducing_gap=1.5)
    thumb = _encoded(working, "WEBP", quality=82, method=0)
    value = int(str(imagehash.phash(working)), 16)
    phash = value - (1 << 64) if value >= (1 << 63) else value
    return upright.size, thumb, phash


@pytest.mark.parametrize("name", CASES)
def test_ingest_gives_what_the_plain_recipe_gives(name: str) -> None:
    inspected = inspect_image(CASES[name]())

    size, thumb, phash = _reference(inspected.data)

    assert (inspected.width, inspected.height) == size
    assert inspected.thumbnails[256] == thumb
    assert inspected.phash == phash


def test_a_turned_photo_is_stored_with_its_upright_size() -> None:
    inspected = inspect_image(_oriented_jpeg(6))

    assert (inspected.width, inspected.height) == (360, 640)


@pytest.mark.parametrize("name", ["jpeg turned 90 (6)", "palette png, transparent"])
def test_a_thumbnail_rendered_later_matches_the_plain_recipe(name: str) -> None:
    inspected = inspect_image(CASES[name]())

    lazy = render_thumbnail(inspected.data, inspected.format, 128)

    with PILImage.open(io.BytesIO(lazy)) as im:
        assert max(im.size) == 128
        # Turned as the photo is: portrait stays portrait.
        assert (im.width < im.height) == (inspected.width < inspected.height)


@pytest.mark.django_db
def test_an_image_is_stored_with_its_album_link_or_not_at_all(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    album = make_album()

    def fails(**kwargs: object) -> None:
        raise RuntimeError("the album's counts could not be written")

    monkeypatch.setattr(services, "album_count_appended", fails)
    with pytest.raises(RuntimeError):
        image_ingest(
            data=CASES["rgb jpeg"](),
            filename="a.jpg",
            source_kind="upload",
            album=album,
        )

    # One transaction: no image row is left outside its album.
    assert not Image.objects.exists()
    monkeypatch.undo()
    result = image_ingest(
        data=CASES["rgb jpeg"](), filename="a.jpg", source_kind="upload", album=album
    )
    assert result.status == "created"
    assert list(album.images.all()) == [result.image]
