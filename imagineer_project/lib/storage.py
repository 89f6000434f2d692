"""Crash-safe local storage for content-addressed files, with group commit.

Every file is written to a temporary name in its folder, made durable, and
renamed into place, so no key ever names a half-written file. Made durable
one by one, that is two fsyncs per file (the file, then its folder) at a few
milliseconds each. Inside `durable_batch()` the files of a batch are written
to their temporary names only; leaving the block makes them durable at once
(data first, then the renames), so a caller commits its rows after that and
no row ever names a file that a power cut could lose.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import tempfile
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextvars import ContextVar
from pathlib import Path

from django.conf import settings
from django.core.files.base import File
from django.core.files.storage import FileSystemStorage


class DurableBatch:
    """The files written (and found) by one batch, made durable together by
    `sync`: each temporary file's data, then the renames into place, then the
    folders' entries; with Linux's syncfs(2) that is two calls per filesystem
    whatever the batch's size, elsewhere one fsync per file and per folder."""

    def __init__(self) -> None:
        self.pending: dict[Path, Path] = {}  # final path -> its temporary file
        # Folders whose entries rows will name: written here, or found there
        # (another writer may not have made its rename durable yet).
        self.folders: set[Path] = set()

    def add(self, final: Path, tmp: Path) -> None:
        self.pending[final] = tmp
        self.folders.add(final.parent)

    def sync(self) -> None:
        """Make every file of the batch durable under its final name."""
        _make_durable(files=list(self.pending.values()))  # data, then renames
        for final, tmp in self.pending.items():
            tmp.replace(final)
        self.pending.clear()
        _make_durable(folders=self.folders)  # the renames
        self.folders.clear()

    def discard(self) -> None:
        for tmp in self.pending.values():
            tmp.unlink(missing_ok=True)
        self.pending.clear()
        self.folders.clear()


_batch: ContextVar[DurableBatch | None] = ContextVar("durable_batch", default=None)


@contextlib.contextmanager
def durable_batch() -> Iterator[DurableBatch]:
    """Defer durability of the local files saved inside the block to its end
    (one `DurableBatch.sync`); on an error the batch's files are dropped and
    none appears under its key. Remote storage (S3) is durable per request and
    ignores it. Nested blocks join the outer one."""
    if _batch.get() is not None:
        yield _batch.get()  # type: ignore[misc]
        return
    batch = DurableBatch()
    token = _batch.set(batch)
    try:
        yield batch
        batch.sync()
    except BaseException:
        batch.discard()
        raise
    finally:
        _batch.reset(token)


class AtomicFileSystemStorage(FileSystemStorage):
    """FileSystemStorage that never exposes a half-written file.

    Django writes small uploads straight to the final path; a crash mid-write
    would leave a truncated file under a content hash. Here every save goes to a
    temporary file in the target folder, is fsynced, and renamed into place
    (inside `durable_batch()`, all at the batch's end). Keys are content
    hashes, so a second writer of the same key writes the same bytes and
    overwriting is harmless.
    """

    def get_available_name(self, name: str, max_length: int | None = None) -> str:
        return name

    def exists(self, name: str) -> bool:
        found = super().exists(name)
        batch = _batch.get()
        if found and batch is not None:
            batch.folders.add(Path(self.path(name)).parent)
        return found

    def _save(self, name: str, content: File) -> str:
        full_path = Path(self.path(name))
        batch = _batch.get()
        if batch is not None and full_path in batch.pending:
            return _key(name)  # the same content, already on its way
        full_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._write_temporary(full_path.parent, content)
        if batch is not None:
            batch.add(full_path, tmp)
            return _key(name)
        try:
            _fsync(tmp)
            tmp.replace(full_path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        _fsync(full_path.parent)
        return _key(name)

    def _write_temporary(self, folder: Path, content: File) -> Path:
        fd, tmp_name = tempfile.mkstemp(dir=folder, prefix=".tmp-")
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out:
                if hasattr(content, "seek"):
                    content.seek(0)
                for chunk in content.chunks():
                    out.write(chunk)
            mode = self.file_permissions_mode
            tmp.chmod(0o644 if mode is None else mode)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return tmp


def _key(name: str) -> str:
    return str(name).replace("\\", "/")


def _make_durable(*, files: Iterable[Path] = (), folders: Iterable[Path] = ()) -> None:
    """fsync `files` and `folders`, or syncfs(2) once per filesystem they are
    on where Linux offers it (one journal commit instead of one per fsync)."""
    files, folders = list(files), set(folders)
    if _syncfs is not None and getattr(settings, "STORAGE_SYNCFS", True):
        for folder in _one_per_filesystem(folders | {f.parent for f in files}):
            _syncfs_folder(folder)
        return
    # Concurrent fsyncs share the filesystem's journal commits (ext4, XFS):
    # far cheaper than the same fsyncs one after another.
    paths = [*files, *folders]
    with ThreadPoolExecutor(max_workers=min(16, len(paths) or 1)) as pool:
        list(pool.map(_fsync, paths))


def _one_per_filesystem(folders: set[Path]) -> list[Path]:
    seen: dict[int, Path] = {}
    for folder in folders:
        seen.setdefault(folder.stat().st_dev, folder)
    return list(seen.values())


def _load_syncfs() -> object | None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.syncfs
    except (OSError, AttributeError):
        return None


_syncfs = _load_syncfs()


def _syncfs_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        if _syncfs(fd) != 0:  # type: ignore[operator]
            errno = ctypes.get_errno()
            raise OSError(errno, os.strerror(errno), str(folder))
    finally:
        os.close(fd)


def _fsync(path: Path) -> None:
    """fsync a file or a folder (a folder: its entries, e.g. a rename)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
