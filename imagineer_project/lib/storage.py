"""Crash-safe local storage for content-addressed files."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from django.core.files.base import File
from django.core.files.storage import FileSystemStorage


class AtomicFileSystemStorage(FileSystemStorage):
    """FileSystemStorage that never exposes a half-written file.

    Django writes small uploads straight to the final path; a crash mid-write
    would leave a truncated file under a content hash. Here every save goes to a
    temporary file in the target folder, is fsynced, and renamed into place. Keys
    are content hashes, so a second writer of the same key writes the same bytes
    and overwriting is harmless.
    """

    def get_available_name(self, name: str, max_length: int | None = None) -> str:
        return name

    def _save(self, name: str, content: File) -> str:
        full_path = Path(self.path(name))
        full_path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=full_path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as tmp:
                if hasattr(content, "seek"):
                    content.seek(0)
                for chunk in content.chunks():
                    tmp.write(chunk)
                tmp.flush()
                os.fsync(tmp.fileno())
            if self.file_permissions_mode is not None:
                Path(tmp_name).chmod(self.file_permissions_mode)
            else:
                Path(tmp_name).chmod(0o644)
            Path(tmp_name).replace(full_path)
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise
        _fsync_dir(full_path.parent)
        return str(name).replace("\\", "/")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
