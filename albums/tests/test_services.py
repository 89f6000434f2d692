from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image as PILImage

from albums.models import AlbumImage, Image, SourceKind
from albums.services import (
    album_add_images,
    album_delete,
    content_filename,
    image_ingest,
    image_thumbnail_key,
    images_delete,
    near_duplicate_policy,
    thumbnail_key,
)
from albums.tests.builders import make_album, make_image
from imagineer_project.testing import make_image_bytes

pytestmark = pytest.mark.django_db


def files_under(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def test_ingest_stores_content_addressed_file_and_thumbnails(settings) -> None:
    album = make_album()
    result = image_ingest(
        data=make_image_bytes(seed=1),
        filename="../x/card.jpg",
        source_kind=SourceKind.UPLOAD,
        album=album,
    )
    image = result.image
    sha = image.sha256
    assert result.status == "created"
    assert image.file.name == f"images/{sha[:2]}/{sha[2:4]}/{sha}.jpg"
    assert image.original_filename == "card.jpg"
    assert files_under(Path(settings.MEDIA_ROOT)) == {
        image.file.name,
        thumbnail_key(sha, 256),
    }
    assert list(album.images.all()) == [image]


def test_exact_duplicate_is_one_row_linked_into_both_albums(settings) -> None:
    first, second = make_album(name="A"), make_album(name="B")
    data = make_image_bytes(seed=2)
    a = image_ingest(data=data, filename="a.jpg", source_kind="upload", album=first)
    b = image_ingest(data=data, filename="b.jpg", source_kind="upload", album=second)
    assert (a.status, b.status) == ("created", "duplicate")
    assert a.image.pk == b.image.pk
    assert Image.objects.count() == 1
    assert len(files_under(Path(settings.MEDIA_ROOT))) == 2


def test_rejected_file_leaves_no_row_and_no_file(settings) -> None:
    result = image_ingest(
        data=b"not an image", filename="x.png", source_kind="upload", album=make_album()
    )
    assert result.status == "rejected"
    assert Image.objects.count() == 0
    assert files_under(Path(settings.MEDIA_ROOT)) == set()


def test_album_order_is_append_order_and_readding_is_a_no_op() -> None:
    album = make_album()
    images = [make_image(seed=n) for n in range(3)]
    assert album_add_images(album=album, images=images) == 3
    assert album_add_images(album=album, images=images[:1]) == 0
    ordered = list(
        AlbumImage.objects.filter(album=album)
        .order_by("position")
        .values_list("image_id", flat=True)
    )
    assert ordered == [im.pk for im in images]


def test_deleting_an_image_removes_its_files(
    settings, django_capture_on_commit_callbacks
) -> None:
    image = make_image(seed=3)
    with django_capture_on_commit_callbacks(execute=True):
        images_delete(images=[image])
    assert Image.objects.count() == 0
    assert files_under(Path(settings.MEDIA_ROOT)) == set()


def test_deleting_an_album_keeps_images_other_albums_hold(
    settings, django_capture_on_commit_callbacks
) -> None:
    doomed, other = make_album(name="Doomed"), make_album(name="Other")
    shared, only_here = (
        make_image(album=doomed, seed=4),
        make_image(album=doomed, seed=5),
    )
    album_add_images(album=other, images=[shared])
    with django_capture_on_commit_callbacks(execute=True):
        counts = album_delete(album=doomed)
    assert counts == {"images_deleted": 1, "images_kept": 1}
    assert list(Image.objects.all()) == [shared]
    assert not Path(settings.MEDIA_ROOT, only_here.file.name).exists()


def test_album_delete_can_keep_every_image() -> None:
    album = make_album()
    make_image(album=album, seed=6)
    assert album_delete(album=album, keep_images=True) == {
        "images_deleted": 0,
        "images_kept": 1,
    }
    assert Image.objects.count() == 1


def test_large_thumbnail_is_rendered_once_on_first_use(settings) -> None:
    image = make_image(seed=8, size=(1200, 900))
    path = Path(settings.MEDIA_ROOT, thumbnail_key(image.sha256, 512))
    assert not path.exists()
    assert image_thumbnail_key(image, 512) == thumbnail_key(image.sha256, 512)
    with PILImage.open(path) as thumb:
        assert (thumb.format, max(thumb.size)) == ("WEBP", 512)


def test_missing_thumbnail_is_regenerated(settings) -> None:
    image = make_image(seed=7)
    path = Path(settings.MEDIA_ROOT, thumbnail_key(image.sha256, 256))
    path.unlink()
    assert image_thumbnail_key(image, 256) == thumbnail_key(image.sha256, 256)
    assert path.exists()


def test_storage_writes_leave_no_temporary_files(settings) -> None:
    for n in range(3):
        make_image(seed=10 + n)
    assert not list(Path(settings.MEDIA_ROOT).rglob(".tmp-*"))


# --- one duplicate and format policy (the doors: test_duplicate_policy.py) -------


def test_content_names_the_stored_file_and_the_name_is_a_warning(settings) -> None:
    """WebP bytes named .jpg: accepted, stored and named as .webp, and the
    inspection's extension_mismatch reaches the caller's result."""
    result = image_ingest(
        data=make_image_bytes("WEBP", seed=21),
        filename="photo.jpg",
        source_kind=SourceKind.UPLOAD,
    )
    image = result.image
    assert result.status == "created"
    assert image.file.name.endswith(f"{image.sha256}.webp")
    assert image.original_filename == "photo.webp"
    assert result.filename == "photo.jpg"  # the answer names what was sent
    codes = [w["code"] for w in result.as_dict()["warnings"]]
    assert codes == ["extension_mismatch"]


@pytest.mark.parametrize(
    ("name", "fmt", "expected"),
    [
        ("photo.jpg", "WEBP", "photo.webp"),
        ("photo.JPEG", "JPEG", "photo.JPEG"),
        ("scan.png", "JPEG", "scan.jpg"),
        ("image", "PNG", "image.png"),
        ("render.php", "GIF", "render.php.gif"),
        ("", "PNG", ""),
    ],
)
def test_content_filename(name: str, fmt: str, expected: str) -> None:
    assert content_filename(name, fmt) == expected


def test_without_a_policy_only_exact_copies_are_caught() -> None:
    """Callers that store the system's own images (generation, training
    previews) pass no policy: a near duplicate is stored as it is."""
    picture = make_image_bytes("JPEG", (480, 360), seed=101)
    with PILImage.open(io.BytesIO(picture)) as im:
        buf = io.BytesIO()
        im.resize((240, 180)).save(buf, "JPEG", quality=70)
    first = image_ingest(data=picture, filename="a.jpg", source_kind="generated")
    second = image_ingest(
        data=buf.getvalue(), filename="b.jpg", source_kind="generated"
    )
    assert (first.status, second.status) == ("created", "created")
    assert second.warnings == ()
    policy = near_duplicate_policy()
    assert policy.mode == "replace_smaller"
    assert policy.nearest(second.image.phash)[0] in (first.image, second.image)
