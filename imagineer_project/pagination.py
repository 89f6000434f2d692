"""Keyset ("seek") pagination for every API list.

A page is one query: `ORDER BY <keys> LIMIT n + 1` with a `WHERE (keys) > (last
row's keys)` condition, never OFFSET and never COUNT(*), so page 2,000 of a
100k-row list costs what page 1 costs. The cursor is the last row's key values,
JSON in urlsafe base64: opaque to callers, cheap to check. Keys must be integer
columns or annotations whose last one is unique (an id), so the order is total.
"""

from __future__ import annotations

import base64
import binascii
import json
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


class PageIn(Schema):
    cursor: str | None = Field(None, max_length=512)
    limit: int = Field(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT)


class PageOut(Schema, Generic[T]):
    items: list[T]
    next_cursor: str | None


@dataclass(frozen=True)
class Page(Generic[M]):
    items: list[M]
    next_cursor: str | None


def encode_cursor(values: Sequence[int]) -> str:
    raw = json.dumps(list(values), separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, length: int) -> list[int]:
    """The key values in `cursor`; Invalid when it is not one of ours."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        values = json.loads(raw)
    except (binascii.Error, ValueError):
        values = None
    valid = (
        isinstance(values, list)
        and len(values) == length
        and all(type(v) is int for v in values)
    )
    if not valid:
        raise Invalid(
            "The cursor is malformed: pass back the next_cursor of the previous "
            "page unchanged, or omit it for the first page.",
            code="invalid_cursor",
        )
    return values


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
