"""Keyset ("seek") pagination for every API list.

A page is one query: `ORDER BY <keys> LIMIT n + 1` with a `WHERE (keys) > (last
row's keys)` condition, never OFFSET and never COUNT(*), so page 2,000 of a
100k-row list costs what page 1 costs. The cursor is the last row's key values
joined by dots ("1234", or "3.1234" for a two-key list): opaque to callers,
cheap to check, and its OpenAPI pattern says exactly which cursors a list takes.
Keys must be integer columns or annotations whose last one is unique (an id),
so the order is total.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from django.db.models import Model, Q, QuerySet
from ninja import Schema
from pydantic import Field

from imagineer_project.errors import Invalid

DEFAULT_LIMIT = 50
MAX_LIMIT = 200

T = TypeVar("T")
M = TypeVar("M", bound=Model)


# One key value: an integer that fits a 64-bit column.
_KEY = r"-?[0-9]{1,18}"


def _cursor_pattern(keys: int) -> str:
    # Empty is no cursor: the first page.
    return "^(" + r"\.".join([_KEY] * keys) + ")?$"


class PageIn(Schema):
    """A page of a list ordered by one key. The cursor's pattern is declared in
    the schema and checked by decode_cursor, which says what is wrong with it
    (invalid_cursor) rather than a generic validation error."""

    cursor: str | None = Field(
        None,
        description="The previous page's next_cursor, unchanged.",
        json_schema_extra={"pattern": _cursor_pattern(1), "maxLength": 19},
    )
    limit: int = Field(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT)


class PairPageIn(PageIn):
    """A page of a list ordered by two keys (position, then id)."""

    cursor: str | None = Field(
        None,
        description="The previous page's next_cursor, unchanged.",
        json_schema_extra={"pattern": _cursor_pattern(2), "maxLength": 39},
    )


class PageOut(Schema, Generic[T]):
    items: list[T]
    next_cursor: str | None


@dataclass(frozen=True)
class Page(Generic[M]):
    items: list[M]
    next_cursor: str | None


def encode_cursor(values: Sequence[int]) -> str:
    return ".".join(str(int(v)) for v in values)


def decode_cursor(cursor: str, length: int) -> list[int]:
    """The key values in `cursor`; Invalid when it is not one of ours."""
    if not cursor or not re.fullmatch(_cursor_pattern(length), cursor):
        raise Invalid(
            "The cursor is malformed: pass back the next_cursor of the previous "
            "page unchanged, or omit it for the first page.",
            code="invalid_cursor",
        )
    return [int(part) for part in cursor.split(".")]


def keyset_paginate(
    queryset: QuerySet[M], *, keys: Sequence[str], page: PageIn
) -> Page[M]:
    """One page of `queryset` ordered by `keys` ("-id", or ("position", "id"))."""
    ordered = queryset.order_by(*keys)
    if page.cursor:
        ordered = ordered.filter(_after(keys, decode_cursor(page.cursor, len(keys))))
    # One row more than asked tells whether another page exists, without COUNT(*).
    rows = list(ordered[: page.limit + 1])
    if len(rows) <= page.limit:
        return Page(rows, None)
    rows = rows[: page.limit]
    last = rows[-1]
    return Page(rows, encode_cursor([getattr(last, k.lstrip("-")) for k in keys]))


def _after(keys: Sequence[str], values: Sequence[int]) -> Q:
    """Rows strictly after `values` in `keys` order, as a lexicographic compare:
    k1 > v1 OR (k1 = v1 AND (k2 > v2 OR ...)); descending keys flip to <."""
    condition: Q | None = None
    for key, value in reversed(list(zip(keys, values, strict=True))):
        name = key.lstrip("-")
        beyond = Q(**{f"{name}__{'lt' if key.startswith('-') else 'gt'}": value})
        condition = (
            beyond if condition is None else beyond | (Q(**{name: value}) & condition)
        )
    assert condition is not None
    first = keys[0].lstrip("-")
    # The redundant k1 >= v1 bound gives the database an index range to seek to.
    bound = Q(**{f"{first}__{'lte' if keys[0].startswith('-') else 'gte'}": values[0]})
    return bound & condition
