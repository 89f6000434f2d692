"""A lock on a name for the rest of a transaction, for get-or-create by a key
the database cannot make unique (album names may repeat across kinds)."""

from __future__ import annotations

import hashlib

from django.db import connection


def lock_name(name: str) -> None:
    """Hold a lock on `name` until the surrounding transaction ends; a second
    transaction asking for the same name waits for the first to commit.

    PostgreSQL: a transaction-scoped advisory lock on a 64-bit hash of the name.
    SQLite: nothing to do, since every transaction here begins IMMEDIATE
    (settings.py), taking the database's write lock before its first read.
    Call it inside `transaction.atomic()`.
    """
    if connection.vendor != "postgresql":
        return
    digest = hashlib.sha256(name.encode()).digest()[:8]
    key = int.from_bytes(digest, "big", signed=True)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [key])
