"""Set templates from the predecessor's `data/sets/config.yaml` and its CSV files.

The file maps a set id to its fields (a list of entries, or either form under
a top-level `sets:` key, is read too):

    card_deck:
      name: Card Deck Template
      csv_path: card_deck.csv
      prompt_template: "{value} of {suit}, ornate playing card"
      loras: [{path: /loras/Card_Fronts.safetensors, weight: 0.6}]
      ...

The slug comes from the set id (card_deck is "card-deck"), the slots from the
CSV, and each entry is checked by set_template_create/update like any other
template, so a bad one is refused whole, named field by field, while the
others import.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from django.db import transaction

from training.models import SetTemplate
from training.sets import templates as tpl
from training.sets.services import (
    TEMPLATE_TEXT_FIELDS,
    SetInvalid,
    set_template_create,
    set_template_update,
)

if TYPE_CHECKING:
    from django.contrib.auth.models import User

# The predecessor's fields taken as they are; csv_path and loras are mapped.
PLAIN_FIELDS = (*TEMPLATE_TEXT_FIELDS, "width", "height")
LORA_FILE_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".bin")


class Outcome(enum.StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    SKIPPED = "skipped"
    FAILED = "failed"


@dataclass
class ImportedTemplate:
    """What became of one entry of the file."""

    key: str  # the set id in the file
    slug: str
    outcome: Outcome
    slots: int = 0
    note: str = ""
    errors: dict[str, str] = field(default_factory=dict)


def set_templates_import(
    *,
    path: Path,
    replace: bool = False,
    dry_run: bool = False,
    created_by: User | None = None,
) -> list[ImportedTemplate]:
    """Create a template for each set of the file; one whose slug exists is
    skipped, or with `replace` updated. A dry run checks every entry the same
    way and writes nothing. Raises SetInvalid when the file cannot be read."""
    entries = config_entries(path)
    with transaction.atomic():
        imported = [
            _import_one(key, entry, path.parent, replace, created_by)
            for key, entry in entries
        ]
        if dry_run:
            transaction.set_rollback(True)
    return imported


def config_entries(path: Path) -> list[tuple[str, Any]]:
    """(set id, its fields) for each set of the file, in file order."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise SetInvalid(f"Cannot read {path}: {exc}") from exc
    if isinstance(data, dict) and list(data) == ["sets"]:
        data = data["sets"]
    if isinstance(data, dict):
        return [(str(key), entry) for key, entry in data.items()]
    if isinstance(data, list) and data:
        return [(_list_key(entry, n), entry) for n, entry in enumerate(data, 1)]
    raise SetInvalid(
        f"{path} holds no sets: expected `set_id: {{name: ..., csv_path: ...}}` "
        "entries, or a list of them"
    )


def _list_key(entry: Any, number: int) -> str:
    if isinstance(entry, dict):
        for name in ("id", "slug", "key", "name"):
            if str(entry.get(name) or "").strip():
                return str(entry[name]).strip()
    return f"entry {number}"


def _import_one(
    key: str, entry: Any, folder: Path, replace: bool, user: User | None
) -> ImportedTemplate:
    slug = tpl.key_for(key.replace("_", " "))
    if not isinstance(entry, dict):
        errors = {"entry": "a mapping of the template's fields"}
        return ImportedTemplate(key, slug, Outcome.FAILED, errors=errors)
    existing = SetTemplate.objects.filter(slug=slug).first()
    if existing is not None and not replace:
        kind = "built-in, " if existing.builtin else ""
        note = (
            f"template {slug!r} exists ({kind}{existing.slot_count} slots); "
            "--replace overwrites it"
        )
        return ImportedTemplate(
            key, slug, Outcome.SKIPPED, existing.slot_count, note=note
        )
    fields, problems = template_fields(entry, folder)
    try:
        # A savepoint: an entry with problems of its own is still checked by
        # the service (every bad field named at once), then undone.
        with transaction.atomic():
            if existing is not None:
                template = set_template_update(template=existing, **fields)
            else:
                template = set_template_create(created_by=user, slug=slug, **fields)
            if problems:
                transaction.set_rollback(True)
    except SetInvalid as exc:
        found = _from_service(exc.errors, entry)
        problems |= {k: v for k, v in found.items() if k not in problems}
    if problems:
        return ImportedTemplate(key, slug, Outcome.FAILED, errors=problems)
    outcome = Outcome.UPDATED if existing is not None else Outcome.CREATED
    return ImportedTemplate(key, slug, outcome, template.slot_count)


def template_fields(
    entry: dict[str, Any], folder: Path
) -> tuple[dict[str, Any], dict[str, str]]:
    """The service's fields of one entry (`csv` read from csv_path), and what
    is wrong with the entry before the service sees it."""
    fields = {name: entry[name] for name in PLAIN_FIELDS if name in entry}
    problems: dict[str, str] = {}
    try:
        fields["loras"] = lora_entries(entry.get("loras"))
    except ValueError as exc:
        problems["loras"] = str(exc)
    csv_path = str(entry.get("csv_path") or "").strip()
    found = csv_file(csv_path, folder) if csv_path else None
    if not csv_path:
        problems["csv_path"] = "required: the CSV file of the set's slots"
    elif found is None:
        problems["csv_path"] = (
            f"{csv_path} not found in {folder}, nor in the folder above it"
        )
    else:
        try:
            fields["csv"] = found.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            problems["csv_path"] = f"{csv_path}: {exc}"
    return fields, problems


def csv_file(csv_path: str, folder: Path) -> Path | None:
    """The CSV an entry names: relative to the YAML's folder, or to the folder
    above it; else (the predecessor wrote `data/sets/x.csv`, relative to its
    repository, or absolute paths on its host) the file's name next to the
    YAML."""
    given = Path(csv_path).expanduser()
    candidates = (folder / given, folder.parent / given, folder / given.name)
    return next((path for path in candidates if path.is_file()), None)


def lora_entries(raw: Any) -> list[dict[str, Any]]:
    """The predecessor's `[{path, weight}]` (or plain names) as the template's
    `[{"name", "weight"}]`: a file's stem names its LoRA."""
    if raw in (None, ""):
        return []
    if not isinstance(raw, list):
        raise ValueError("a list of {path, weight} entries or LoRA names")
    entries = []
    for item in raw:
        if isinstance(item, str):
            name, weight = item, None
        elif isinstance(item, dict) and (item.get("name") or item.get("path")):
            name, weight = str(item.get("name") or item["path"]), item.get("weight")
        else:
            raise ValueError(f"{item!r}: give a path or a name, and a weight")
        if name.lower().endswith(LORA_FILE_SUFFIXES):
            name = Path(name).stem
        entries.append({"name": name.strip(), "weight": weight})
    return entries


def _from_service(errors: dict[str, str], entry: dict[str, Any]) -> dict[str, str]:
    """The service's errors under the file's names: the table is csv_path's."""
    named: dict[str, str] = {}
    for name, problem in errors.items():
        if name in ("csv", "columns", "rows"):
            # The first says why: a CSV that failed to parse has no columns too.
            named.setdefault("csv_path", f"{entry.get('csv_path')}: {problem}")
        else:
            named[name] = problem
    return named
