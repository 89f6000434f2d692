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
    assert "2 new, 0 already known, 3 rejected, 1 caption(s)" in out
    # Every file not imported, by its path in the folder, with the reason.
    assert "rejected major/broken.jpg: Corrupt" in err
    assert "rejected major/notes.md: Not a recognised image" in err
    assert "rejected .hidden/: A hidden folder; not imported." in err
    assert "fool.txt" not in err  # a caption beside its image, not a reject


def test_files_of_the_same_name_are_told_apart_by_their_path(tmp_path, capsys) -> None:
    root = tmp_path / "deck"
    for folder in ("minor", "major"):
        (root / folder).mkdir(parents=True)
        (root / folder / "card.gif").write_bytes(b"GIF89a not really")
    (root / "scan.jpg").write_bytes(make_image_bytes("PNG", seed=9))
    call_command("import_images", str(root), album="Deck", quiet=True)
    err = capsys.readouterr().err
    assert "rejected major/card.gif" in err and "rejected minor/card.gif" in err
    # The content decides: a PNG named .jpg is imported, with a warning.
    assert "extension_mismatch scan.jpg: named .jpg, content is PNG" in err
    assert Image.objects.get().format == "PNG"


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
