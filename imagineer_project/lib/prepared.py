"""Cursors whose statements PostgreSQL plans once per connection.

Django binds parameters on the client by default (the values are written into
the SQL text), so PostgreSQL parses and plans every query anew. For the pages'
hot queries, whose SQL is compiled once per process (albums.selectors), the
plan cost more than running them: the visitors' visibility rule is two nested
NOT EXISTS, ~1 ms to plan and ~0.1 ms to run for one image. A
`prepared_cursor()` on PostgreSQL binds on the server and prepares each
statement on its first run; the connection keeps the plan (psycopg names and
caches it) for every later request it serves.

Django leaves preparation off because a pooler in transaction mode may hand a
session's next transaction to another server connection, where the prepared
statement does not exist (PgBouncer tracks them since 1.21, when its
max_prepared_statements is set).
`IMAGINEER_DB_PREPARED=0` (settings.DB_PREPARED) turns it off for such a
deployment; elsewhere, and on SQLite, this is Django's own cursor.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.db import DatabaseError, connection

# psycopg 3 (a dependency): the server-binding cursor Django defines for it.
from django.db.backends.postgresql.base import ServerBindingCursor

logger = logging.getLogger(__name__)


def prepared_cursor() -> Any:
    """A Django cursor (query logging and execute wrappers included) on the
    default connection; on PostgreSQL with psycopg 3, one that prepares."""
    if not _preparing():
        return connection.cursor()
    connection.close_if_health_check_failed()
    connection.ensure_connection()
    connection.validate_thread_sharing()
    raw = connection.connection
    if raw.prepare_threshold is None:
        # Django turns psycopg's preparation off (None) for every cursor; a
        # threshold lets this cursor's explicit prepare work again. Its other
        # cursors bind on the client, and those never prepare.
        raw.prepare_threshold = _NEVER_BY_COUNT
    with connection.wrap_database_errors:
        cursor = _PreparingCursor(raw)
    if connection.queries_logged:
        cursor.keeps_text = True
        return connection.make_debug_cursor(cursor)
    return connection.make_cursor(cursor)


def fetch_prepared(sql: str, params: list[Any]) -> list[tuple]:
    """The rows of `sql` run through prepared_cursor().

    Where the connection turns out not to keep prepared statements (a pooler
    in transaction mode that hands the session another server connection:
    "prepared statement ... does not exist", or "... already exists"), this
    process stops preparing, says so once in the log, and runs the query
    again unprepared. Inside a transaction the error stands: PostgreSQL has
    aborted the transaction, and only its owner can roll it back."""
    global _REFUSED
    try:
        with prepared_cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall()
    except DatabaseError as exc:
        if not _statement_lost(exc) or connection.in_atomic_block:
            raise
        _REFUSED = True
        logger.warning(
            "The database connection does not keep prepared statements (%s): "
            "a connection pooler in transaction mode? This process runs its "
            "queries unprepared from now on; set IMAGINEER_DB_PREPARED=0 to "
            "say so from the start.",
            exc,
        )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def _statement_lost(exc: DatabaseError) -> bool:
    import psycopg

    lost = (
        psycopg.errors.InvalidSqlStatementName,
        psycopg.errors.DuplicatePreparedStatement,
    )
    return isinstance(exc.__cause__, lost)


# Set once a connection showed it does not keep prepared statements.
_REFUSED = False


def _preparing() -> bool:
    return connection.vendor == "postgresql" and settings.DB_PREPARED and not _REFUSED


# Only statements run with prepare=True are prepared, never by a count of runs.
_NEVER_BY_COUNT = 2**31 - 1


class _PreparingCursor(ServerBindingCursor):
    """Django's server-binding psycopg cursor, preparing every statement it
    runs (psycopg reuses the prepared one when the SQL text repeats)."""

    keeps_text = False

    def execute(self, query: Any, params: Any = None, **kwargs: Any) -> Any:
        kwargs.setdefault("prepare", True)
        done = super().execute(query, params, **kwargs)
        if self.keeps_text and self._query is None:
            # psycopg keeps no text for a prepared run; Django's query log
            # (DEBUG, tests) reads it: the SQL with $1, $2...
            self._query = self._convert_query(query, params)
        return done
