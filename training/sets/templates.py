"""What a set template is made of, checked and assembled: its slots (the rows
of its table), their keys and labels, its CSV form, and the prompt of a slot.

Plain functions over plain values: the model, the admin form, the API and the
YAML importer all go through them, so a template reads and fails the same way
wherever it is edited.

A row is `{"key": "ace-of-spades", "label": "Ace of Spades", "values":
{"value": "Ace", "suit": "Spades"}}`. In CSV the header row names the columns;
`key` and `label` are optional extra columns (reserved names), and a row
without them gets the predecessor's item name: "<value> of <suit>" when both
columns exist, else the `name`, `card` or `sign` column, else its first value.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from django.utils.text import slugify

RESERVED_COLUMNS = ("key", "label")
MAX_ROWS = 500
MAX_COLUMNS = 20
MAX_VALUE_CHARS = 500
KEY_MAX_CHARS = 100
# "{suit}", "{visual layout}": a name of letters, digits, "_", "-" and spaces.
PLACEHOLDER = re.compile(r"\{([A-Za-z0-9_][A-Za-z0-9_\- ]*)\}")
KEY_SHAPE = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
NAME_COLUMNS = ("name", "card", "sign")
# Words the slot API uses after /slots/: a slot may not be called so.
RESERVED_KEYS = ("contact-sheet", "export", "fill-missing")


def placeholders(template: str) -> list[str]:
    """The column names `template` asks for, each once, in order."""
    return list(dict.fromkeys(m.strip() for m in PLACEHOLDER.findall(template)))


def fill(template: str, values: Mapping[str, str]) -> str:
    """`template` with each `{column}` replaced by the row's value."""
    return PLACEHOLDER.sub(
        lambda m: str(values.get(m.group(1).strip(), m.group(0))), template
    ).strip()


def assemble_prompt(
    *,
    base_prompt: str,
    theme: str,
    filled: str,
    style_suffix: str,
) -> str:
    """The predecessor's order, non-empty parts joined with ". ": base prompt,
    "Art style: <theme>", the filled template, the style suffix. (Trigger
    words go in front later, as in single generation.)"""
    parts = [
        base_prompt.strip().rstrip("."),
        f"Art style: {theme.strip()}" if theme.strip() else "",
        filled.strip().rstrip("."),
        style_suffix.strip().rstrip("."),
    ]
    return ". ".join(p for p in parts if p)


def default_label(columns: Sequence[str], values: Mapping[str, str]) -> str:
    """A row's readable name when it does not give one."""
    if values.get("value") and values.get("suit"):
        return f"{values['value']} of {values['suit']}"
    for column in NAME_COLUMNS:
        if values.get(column):
            return values[column]
    return next((values[c] for c in columns if values.get(c)), "")


def key_for(label: str) -> str:
    """The slot key of a label: "Ace of Spades" is "ace-of-spades"."""
    return slugify(label)[:KEY_MAX_CHARS].strip("-")


# --- rows -----------------------------------------------------------------------


def normalize_rows(
    columns: Sequence[str], raw_rows: Iterable[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """Rows in stored form from dicts holding column values, and optionally
    `key`, `label` or a nested `values`; missing keys and labels derived."""
    rows = []
    for raw in raw_rows:
        given = raw.get("values") if isinstance(raw.get("values"), Mapping) else raw
        values = {c: _cell(given.get(c)) for c in columns}
        label = _cell(raw.get("label")) or default_label(columns, values)
        key = _cell(raw.get("key")) or key_for(label)
        rows.append({"key": key, "label": label, "values": values})
    return rows


def _cell(value: Any) -> str:
    return "" if value is None else str(value).strip()


def rows_from_csv(text: str) -> tuple[list[str], list[dict[str, Any]]]:
    """The columns (the header row, minus `key` and `label`) and the rows of a
    CSV table; raises ValueError saying what is wrong with it."""
    reader = csv.reader(io.StringIO(text.strip().lstrip("\ufeff")))
    lines = [line for line in reader if any(cell.strip() for cell in line)]
    if not lines:
        raise ValueError("the CSV is empty: give a header row and at least one row")
    header = [cell.strip() for cell in lines[0]]
    if any(not cell for cell in header):
        raise ValueError("every column of the header row needs a name")
    if len(set(header)) != len(header):
        raise ValueError("the header row names a column twice")
    columns = [c for c in header if c not in RESERVED_COLUMNS]
    raw_rows = []
    for number, line in enumerate(lines[1:], start=2):
        if len(line) > len(header):
            raise ValueError(
                f"line {number} has {len(line)} cells; the header has {len(header)}"
            )
        raw_rows.append(dict(zip(header, line, strict=False)))
    return columns, normalize_rows(columns, raw_rows)


def rows_to_csv(columns: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> str:
    """The table as CSV: `key,label,<columns>` then one line per row."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*RESERVED_COLUMNS, *columns])
    for row in rows:
        values = row.get("values", {})
        writer.writerow(
            [row["key"], row["label"], *(values.get(c, "") for c in columns)]
        )
    return out.getvalue()


# --- checking -------------------------------------------------------------------


def check_columns(columns: Sequence[str]) -> str | None:
    if not columns:
        return "at least one column"
    if len(columns) > MAX_COLUMNS:
        return f"at most {MAX_COLUMNS} columns (got {len(columns)})"
    if len(set(columns)) != len(columns):
        return "a column is named twice"
    for column in columns:
        if column in RESERVED_COLUMNS:
            return f"{column!r} is reserved for the slot's {column}; rename the column"
        if not PLACEHOLDER.fullmatch("{" + column + "}"):
            return (
                f"column {column!r}: use letters, digits, spaces, '_' and '-' "
                "(it is written {like this} in the prompt template)"
            )
    return None


def check_rows(columns: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> str | None:
    if not rows:
        return "at least one row"
    if len(rows) > MAX_ROWS:
        return f"at most {MAX_ROWS} rows (got {len(rows)})"
    seen: dict[str, int] = {}
    for number, row in enumerate(rows, start=1):
        key = row["key"]
        if not key:
            return f"row {number} has no slot key and nothing to make one from"
        if not KEY_SHAPE.match(key) or len(key) > KEY_MAX_CHARS:
            return (
                f"row {number}: slot key {key!r} must be lower-case letters and digits "
                f"joined by '-', at most {KEY_MAX_CHARS} characters"
            )
        if key in RESERVED_KEYS:
            return f"row {number}: {key!r} is a reserved word; choose another key"
        if key in seen:
            return f"rows {seen[key]} and {number} have the same slot key {key!r}"
        seen[key] = number
        too_long = [
            c for c in columns if len(row["values"].get(c, "")) > MAX_VALUE_CHARS
        ]
        if too_long or len(row["label"]) > 200:
            return f"row {number}: a value is over {MAX_VALUE_CHARS} characters"
    return None


def check_prompt_template(template: str, columns: Sequence[str]) -> str | None:
    if not template.strip():
        return "a prompt template is required, e.g. '{value} of {suit}'"
    unknown = [name for name in placeholders(template) if name not in columns]
    if unknown:
        names = ", ".join("{" + n + "}" for n in unknown)
        return f"{names} names no column (columns: {', '.join(columns) or 'none'})"
    return None
