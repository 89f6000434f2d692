"""Which file of a legacy folder goes where: the old system's folder rules, as
a walk that reads the file tree and nothing else (no database, no writes).

An outputs tree (the old `outputs/` folder):

    <root>/20240312_101500_a-fox.png       -> a single (bucketed by month)
    <root>/card_deck_antique/…, tarot_deck_… -> Decks/<slug>
    <root>/zodiac_night/…                   -> Zodiac/<slug>
    <root>/lora_tests/x.png                 -> LoRA Experiments/lora-tests
    <root>/lora_tests/sketchy/…             -> LoRA Experiments/sketchy
    <root>/thumbnails/…                     -> skipped
    <root>/<any other folder>/…             -> Batches/<slug>

An image pack (the old reference datasets): <root>/<pack>/image.jpg with an
optional image.txt caption -> Reference Packs/<pack>; images directly in
<root> go to Reference Packs/<root's name>.

A `<stem>.json` beside an image is its sidecar; every other file is reported
(skipped, with why), never silently dropped. Links are not followed out of the
root: a symlink whose target lies outside it is refused.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from albums.ingest import EXTENSIONS

SINGLES = "Legacy Singles"
TAXONOMY = {
    "deck": "Decks",
    "zodiac": "Zodiac",
    "lora_test": "LoRA Experiments",
    "batch": "Batches",
    "pack": "Reference Packs",
}
DECK_PREFIXES = ("card_deck_", "tarot_deck_")


@dataclass(frozen=True)
class Found:
    """One file of a legacy folder and what the rules make of it."""

    root: Path
    path: Path
    relative: str  # with "/" separators
    kind: str  # an ImportItem.Kind
    group: str = ""  # the album's slug within its kind (not for singles)
    skip: str = ""  # why it is not imported
    reject: str = ""  # why it is refused before it is read
    sidecar: Path | None = None  # <stem>.json of an outputs image
    caption: Path | None = None  # <stem>.txt of a pack image

    @property
    def is_image(self) -> bool:
        return not (self.skip or self.reject)


def slug(name: str) -> str:
    """A folder name as the taxonomy writes it: lower case, `_` and spaces as
    `-` (card_deck_antique -> card-deck-antique)."""
    return name.strip().lower().replace("_", "-").replace(" ", "-")


def album_name(found: Found, month: str | None) -> str:
    """The album a file goes to; singles by the month they were made
    ("2024-03"), or "undated" when neither a sidecar nor the name dates them."""
    if found.kind == "single":
        return f"{SINGLES}/{month or 'undated'}"
    return f"{TAXONOMY[found.kind]}/{found.group}"


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in EXTENSIONS


@dataclass(frozen=True)
class Folder:
    """What a file's own folder holds, listed once per folder: its file
    names, and the stems of its images (a sidecar's or caption's partner)."""

    names: frozenset[str]
    image_stems: frozenset[str]

    @classmethod
    def of(cls, files: list[str]) -> Folder:
        paths = [Path(name) for name in files]
        stems = frozenset(p.stem for p in paths if _is_image(p))
        return cls(frozenset(files), stems)

    def companion(self, path: Path, suffix: str) -> Path | None:
        """The file beside `path` with `suffix` instead of its own, if any."""
        companion = path.with_suffix(suffix)
        return companion if companion.name in self.names else None

    def has_image_for(self, path: Path) -> bool:
        return path.stem in self.image_stems


NO_FOLDER = Folder(frozenset(), frozenset())


def _walk(root: Path) -> Iterator[tuple[Path, bool, Folder]]:
    """(path, is a linked folder, its folder) for every file and linked folder
    under root, in a stable order; linked folders are not entered."""
    for folder, dirs, files in os.walk(root, followlinks=False):
        here = Path(folder)
        dirs.sort()
        for name in [d for d in dirs if (here / d).is_symlink()]:
            dirs.remove(name)
            yield here / name, True, NO_FOLDER
        listing = Folder.of(files)
        for name in sorted(files):
            yield here / name, False, listing


def _link_problem(root: Path, path: Path, is_dir: bool) -> tuple[str, str]:
    """(reject, skip) for a symlink: refused when it leaves the root; a linked
    folder inside it is not followed (its files are imported where they are)."""
    target = path.resolve()
    if not target.is_relative_to(root.resolve()):
        return "a symlink that leaves the source folder", ""
    if is_dir:
        return (
            "",
            "a linked folder (not followed; its files are imported where they are)",
        )
    return "", ""


def _outputs_kind(parts: tuple[str, ...]) -> tuple[str, str]:
    """(kind, group) of an image at `parts` (relative to an outputs root)."""
    if len(parts) == 1:
        return "single", ""
    top = parts[0]
    if top.startswith(DECK_PREFIXES):
        return "deck", slug(top)
    if top.startswith("zodiac_"):
        return "zodiac", slug(top)
    if top == "lora_tests":
        return "lora_test", slug(parts[1]) if len(parts) > 2 else "lora-tests"
    return "batch", slug(top)


def _collect(
    root: Path,
    classify: Callable[[Path, tuple[str, ...], dict, Folder], Found | None],
) -> Iterator[Found]:
    """Walk `root`: links are judged here, every other file by `classify`
    (None: the file goes with another, such as a sidecar with its image)."""
    root = Path(root)
    for path, linked_dir, folder in _walk(root):
        relative = PurePosixPath(path.relative_to(root).as_posix())
        common = {"root": root, "path": path, "relative": str(relative)}
        reject, skip = (
            _link_problem(root, path, linked_dir) if path.is_symlink() else ("", "")
        )
        if reject or skip:
            yield Found(**common, kind="other", reject=reject, skip=skip)
        elif (found := classify(path, relative.parts, common, folder)) is not None:
            yield found


def _outputs_file(
    path: Path, parts: tuple[str, ...], common: dict, folder: Folder
) -> Found | None:
    if len(parts) > 1 and parts[0] == "thumbnails":
        return Found(**common, kind="other", skip="a thumbnail the old system made")
    if path.suffix.lower() == ".json":
        if folder.has_image_for(path):
            return None
        return Found(**common, kind="other", skip="a sidecar with no image")
    if _is_image(path):
        kind, group = _outputs_kind(parts)
        sidecar = folder.companion(path, ".json")
        return Found(**common, kind=kind, group=group, sidecar=sidecar)
    return Found(**common, kind="other", skip=_not_an_image(path))


def _packs_file(
    path: Path, parts: tuple[str, ...], common: dict, folder: Folder
) -> Found | None:
    if path.suffix.lower() == ".txt":
        if folder.has_image_for(path):
            return None
        return Found(**common, kind="other", skip="a caption with no image")
    if _is_image(path):
        group = slug(parts[0] if len(parts) > 1 else common["root"].name)
        caption = folder.companion(path, ".txt")
        return Found(**common, kind="pack", group=group, caption=caption)
    return Found(**common, kind="other", skip=_not_an_image(path))


def collect_outputs(root: Path) -> Iterator[Found]:
    """Every file of an outputs tree, classified."""
    return _collect(root, _outputs_file)


def collect_packs(root: Path) -> Iterator[Found]:
    """Every file of a folder of image packs, classified."""
    return _collect(root, _packs_file)


def _not_an_image(path: Path) -> str:
    suffix = path.suffix.lower()
    return f"not an image ({suffix} file)" if suffix else "not an image"
