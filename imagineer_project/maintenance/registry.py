"""What maintenance can do, as registered by the apps that own the data.

A *pass* is a function `(report: PassReport) -> None` that finds what is due
for removal, records each thing in the report and, unless `report.dry_run`,
removes it. Apps register theirs from AppConfig.ready() with `register_pass`;
the runner (imagineer_project.maintenance.runner) makes each call a
MaintenanceRun and the scheduler runs them every `minutes`.

A *storage owner* declares a prefix of default storage ("images/") and the
keys its rows reference there; `reconcile-storage` deletes the files under the
prefix no row references (once older than the grace period) and reports the
rows whose file is missing (when `report_missing`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

# At most this many removed things are listed by name in a report; the counts
# and bytes always cover all of them.
MAX_LISTED = 200


@dataclass
class PassReport:
    """What one pass removed (or, in a dry run, would remove)."""

    dry_run: bool
    removed: list[dict[str, Any]] = field(default_factory=list)
    items_removed: int = 0
    bytes_freed: int = 0
    problems: list[str] = field(default_factory=list)
    problem_count: int = 0  # all of them; `problems` lists the first MAX_LISTED
    # Figures of the pass's own (disk readings, rows scanned, ...).
    facts: dict[str, Any] = field(default_factory=dict)
    # (done, total, message) -> None: the run's checkpoint (heartbeat, cancel).
    on_progress: Callable[[int, int, str], None] | None = None
    # What a caller asked of this one run beyond dry_run (reconcile_storage's
    # {"grace_hours": N}); a pass reads the options it knows.
    options: dict[str, Any] = field(default_factory=dict)
    # How many of each kind of thing were removed ({"file": 12}), for the
    # run's one-line message.
    kinds: dict[str, int] = field(default_factory=dict)

    def remove(self, what: str, name: str, *, size: int = 0, count: int = 1) -> None:
        """Record one thing removed: `what` kind of thing ("file", "crawl log
        rows", "work dir"), `name` as a person would find it (a storage key, a
        path relative to its configured root, never an absolute path)."""
        self.items_removed += count
        self.bytes_freed += size
        self.kinds[what] = self.kinds.get(what, 0) + count
        if len(self.removed) < MAX_LISTED:
            self.removed.append(
                {"what": what, "name": name, "size": size, "count": count}
            )

    def problem(self, text: str) -> None:
        """Something a person should look at that the pass does not fix (a row
        whose file is missing)."""
        self.problem_count += 1
        if len(self.problems) < MAX_LISTED:
            self.problems.append(text)

    def progress(self, done: int, total: int, message: str) -> None:
        if self.on_progress is not None:
            self.on_progress(done, total, message)

    def as_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "items_removed": self.items_removed,
            "bytes_freed": self.bytes_freed,
            "kinds": self.kinds,
            "removed": self.removed,
            "listed": len(self.removed),
            "problems": self.problems,
            "problem_count": self.problem_count,
            "facts": self.facts,
        }


PassFunc = Callable[[PassReport], None]


@dataclass(frozen=True)
class MaintenancePass:
    name: str
    func: PassFunc
    minutes: int  # how often the scheduler runs it
    description: str


@dataclass(frozen=True)
class StorageOwner:
    prefix: str  # "images/": the owner's part of default storage
    expected_keys: Callable[[], Iterable[str]]  # every key its rows reference
    description: str
    # Report rows whose file is missing (False for derived files, such as
    # thumbnails, that are made again on demand).
    report_missing: bool = True


PASSES: dict[str, MaintenancePass] = {}
STORAGE_OWNERS: dict[str, StorageOwner] = {}


def register_pass(name: str, func: PassFunc, *, minutes: int, description: str) -> None:
    PASSES[name] = MaintenancePass(name, func, minutes, description)


def register_storage_owner(
    prefix: str,
    expected_keys: Callable[[], Iterable[str]],
    *,
    description: str,
    report_missing: bool = True,
) -> None:
    if not prefix.endswith("/"):
        raise ValueError(f"A storage prefix ends with '/': {prefix!r}")
    STORAGE_OWNERS[prefix] = StorageOwner(
        prefix, expected_keys, description, report_missing
    )
