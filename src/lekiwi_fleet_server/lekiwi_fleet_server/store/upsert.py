"""INSERT ... ON CONFLICT DO UPDATE / DO NOTHING for both PostgreSQL and SQLite."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

# Bind parameters per statement: SQLite allows 32,766, PostgreSQL 65,535; stay well below.
MAX_PARAMS = 30_000


def _insert(conn: Connection, table: sa.Table) -> Any:
    if conn.dialect.name == 'postgresql':
        return postgresql.insert(table)
    return sqlite.insert(table)


def chunks(rows: Sequence[Mapping[str, Any]], width: int) -> list[Sequence[Mapping[str, Any]]]:
    """Split `rows` so no statement carries more than MAX_PARAMS parameters."""
    size = max(1, MAX_PARAMS // max(1, width))
    return [rows[i:i + size] for i in range(0, len(rows), size)]


def upsert(conn: Connection, table: sa.Table, rows: Sequence[Mapping[str, Any]],
           keys: Sequence[str]) -> None:
    """Insert `rows`, or update every non-key column where the key exists: a statement a chunk."""
    if not rows:
        return
    columns = list(rows[0])
    for chunk in chunks(rows, len(columns)):
        stmt = _insert(conn, table).values(list(chunk))
        update = {c: stmt.excluded[c] for c in columns if c not in keys}
        if update:
            stmt = stmt.on_conflict_do_update(index_elements=list(keys), set_=update)
        else:
            stmt = stmt.on_conflict_do_nothing(index_elements=list(keys))
        conn.execute(stmt)


def insert_ignore(conn: Connection, table: sa.Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert `rows`, skipping those whose unique key is already present: a statement a chunk."""
    if not rows:
        return
    for chunk in chunks(rows, len(rows[0])):
        conn.execute(_insert(conn, table).values(list(chunk)).on_conflict_do_nothing())
