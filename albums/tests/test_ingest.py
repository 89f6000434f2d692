from __future__ import annotations

import pytest

from albums.ingest import ImageRejected, inspect_image
from imagineer_project.testing import make_image_bytes


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "GIF", "BMP"])
def test_each_allowed_format_is_accepted(fmt: str) -> None:
    data = make_image_bytes(fmt, (80, 60), seed=1)
    inspected = inspect_image(data, f"photo.{fmt.lower()}")
    assert (inspected.format, inspected.width, inspected.height) == (fmt, 80, 60)
    assert set(inspected.thumbnails) == {256, 512}


def test_truncated_jpeg_is_rejected_as_corrupt() -> None:
    data = make_image_bytes("JPEG", (300, 200), seed=2)
    with pytest.raises(ImageRejected) as err:
        inspect_image(data[: len(data) // 2], "half.jpg")
    assert err.value.code == "corrupt"
