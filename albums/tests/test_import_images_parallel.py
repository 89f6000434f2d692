"""`import_images` in the foreground spreads a big folder over processes, as
the worker spreads a run over its cluster: every file recorded once, counts
exact. Run as a real command in its own library (forked processes cannot
share the tests' in-memory database)."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from imagineer_project.testing import make_image_bytes

ROOT = Path(__file__).resolve().parents[2]
FILES = 70  # three chunks of at most 32 (CHUNK_MIN_FILES): two processes busy


def manage(var: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "IMAGINEER_VAR_DIR": str(var), "Q_WORKERS": "2"}
    env.pop("DATABASE_URL", None)
    env.pop("DJANGO_SETTINGS_MODULE", None)
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_a_big_folder_is_imported_by_two_processes_each_file_once(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "deck"
    folder.mkdir()
    for n in range(FILES - 1):
        (folder / f"{n:03d}.png").write_bytes(make_image_bytes("PNG", seed=900 + n))
    (folder / "zz-notes.jpg").write_bytes(b"not an image")
    var = tmp_path / "var"
    assert manage(var, "migrate", "-v0").returncode == 0

    done = manage(
        var,
        "import_images",
        str(folder),
        "--album",
        "Deck",
        "--quiet",
        "--near-duplicates",
        "keep",
    )

    assert done.returncode == 0, done.stderr
    assert "Ingesting in 2 processes" in done.stdout
    assert f"{FILES - 1} new, 0 already known, 1 rejected" in done.stdout
    with sqlite3.connect(var / "imagineer.sqlite3") as db:
        status, progress, created = db.execute(
            "SELECT status, progress_done, created_count FROM albums_uploadrun"
        ).fetchone()
        positions = [
            p
            for (p,) in db.execute(
                "SELECT position FROM albums_uploadfile ORDER BY position"
            )
        ]
        images = db.execute("SELECT count(*) FROM albums_image").fetchone()[0]
        members = db.execute("SELECT count(*) FROM albums_albumimage").fetchone()[0]
    assert (status, progress, created) == ("succeeded", FILES, FILES - 1)
    assert positions == list(range(FILES))
    assert images == members == FILES - 1
