"""legacy_imports (the history and one import's details) and
legacy_reconcile (what a folder holds that no import took, or that changed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from imagineer_project.testing import make_image_bytes
from legacy.models import ImportRun
from legacy.tests.builders import build_legacy_tree

pytestmark = pytest.mark.django_db


def test_history_and_details(tmp_path: Path, capsys: Any) -> None:
    tree = build_legacy_tree(tmp_path / "legacy")
    call_command("import_legacy", str(tree.outputs), "--dry-run")
    call_command("import_legacy", str(tree.outputs))
    capsys.readouterr()

    call_command("legacy_imports")
    lines = capsys.readouterr().out.splitlines()
    real, dry = ImportRun.objects.order_by("-id")
    assert lines[0].startswith(f"#{real.pk} ")
    assert "import succeeded: 11 created, 0 near_duplicate, 0 duplicate" in lines[0]
    assert "dry run succeeded: 11 created" in lines[1]

    call_command("legacy_imports", str(real.pk))
    out = capsys.readouterr().out
    assert "albums created: Batches/card-sets-2023-misc, Decks/card-deck-antique" in out
    assert "rejected  escape.png: a symlink that leaves the source folder" in out
    assert "skipped  thumbnails/1.png: a thumbnail the old system made" in out
    assert "attached  zodiac_night/aries.png" in out
    assert "created  moon.png" not in out  # created files are not listed

    with pytest.raises(CommandError, match="No legacy import 999"):
        call_command("legacy_imports", "999")


def test_reconcile_finds_new_gone_and_changed_files(
    tmp_path: Path, capsys: Any
) -> None:
    tree = build_legacy_tree(tmp_path / "legacy")
    call_command("import_legacy", str(tree.outputs))
    call_command("legacy_reconcile", str(tree.outputs))
    clean = capsys.readouterr().out
    assert "every image file imported" in clean
    assert "refused: card_deck_antique/broken.png (" in clean

    (tree.outputs / "new_one.png").write_bytes(make_image_bytes("PNG", seed=500))
    (tree.outputs / "sketch.png").unlink()
    (tree.outputs / "moon.png").write_bytes(make_image_bytes("PNG", seed=501))
    with pytest.raises(CommandError) as failed:
        call_command("legacy_reconcile", str(tree.outputs))
    assert failed.value.returncode == 1
    out = capsys.readouterr().out.splitlines()
    assert "not imported: new_one.png" in out
    assert "gone since imported: sketch.png" in out
    assert "changed since imported: moon.png" in out
    # What an import refused is listed for the record, not as new.
    assert not [line for line in out if line.startswith("not imported: card_deck")]
