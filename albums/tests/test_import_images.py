from __future__ import annotations

from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from albums.models import Album, Image
from imagineer_project.testing import make_image_bytes
from labeling.models import Label

pytestmark = pytest.mark.django_db


def make_tree(root: Path) -> None:
    (root / "major").mkdir(parents=True)
    (root / ".hidden").mkdir()
    (root / "fool.jpg").write_bytes(make_image_bytes(seed=1))
    (root / "fool.txt").write_text("The Fool, a young traveller at a cliff edge\n")
    (root / "major" / "magician.PNG").write_bytes(make_image_bytes("PNG", seed=2))
    (root / "major" / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    (root / "major" / "notes.md").write_text("not an image")
    (root / ".hidden" / "skip.jpg").write_bytes(make_image_bytes(seed=3))


def test_imports_a_folder_recursively_with_sidecar_captions(tmp_path, capsys) -> None:
    make_tree(tmp_path / "tarot")
    call_command("import_images", str(tmp_path / "tarot"), album="Tarot", quiet=True)

    album = Album.objects.get(name="Tarot")
    names = sorted(album.images.values_list("original_filename", flat=True))
    assert names == ["fool.jpg", "magician.PNG"]
    caption = Label.objects.get()
    assert (caption.kind, caption.source, caption.text) == (
        "caption",
        "sidecar",
        "The Fool, a young traveller at a cliff edge",
    )
    out, err = capsys.readouterr()
    assert "2 new, 0 already known, 1 rejected, 1 caption(s)" in out
    assert "rejected broken.jpg" in err


def test_running_the_import_twice_duplicates_nothing(tmp_path, capsys) -> None:
    make_tree(tmp_path / "t")
    call_command("import_images", str(tmp_path / "t"), album="Tarot", quiet=True)
    call_command("import_images", str(tmp_path / "t"), album="Tarot", quiet=True)
    assert (Image.objects.count(), Label.objects.count(), Album.objects.count()) == (
        2,
        1,
        1,
    )
    assert "0 new, 2 already known" in capsys.readouterr().out


def test_a_missing_folder_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(CommandError, match="is not a folder"):
        call_command("import_images", str(tmp_path / "nope"), album="X")
