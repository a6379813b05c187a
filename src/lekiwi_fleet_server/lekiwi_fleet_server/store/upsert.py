"""Write many rows in one statement: INSERT ... ON CONFLICT DO UPDATE / DO NOTHING, UPDATE.

PostgreSQL gets one statement per call whatever the row count: each column travels as one
array parameter in binary format and `unnest` turns the arrays back into rows. (Per-row
executemany cost ~40 us a row server-side, and psycopg's text-format arrays escape every string
with a Python regex: 10 ms for 500 JSON values. Binary arrays take under 1 ms.) SQLite runs
the same cached INSERT for every row in one prepared-statement loop, which is fast in-process.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Connection


def _pg_type(column: sa.Column[Any]) -> tuple[str, str]:
    """Return (array element type, cast applied per row) of a column in the unnest query."""
    kind = column.type
    if isinstance(kind, sa.JSON):
        return 'text', '::json'
    if isinstance(kind, sa.Boolean):
        return 'boolean', ''
    if isinstance(kind, sa.BigInteger):
        return 'bigint', ''
    if isinstance(kind, sa.SmallInteger):
        return 'smallint', ''
    if isinstance(kind, sa.Integer):
        return 'integer', ''
    if isinstance(kind, sa.Double | sa.Float):
        return 'double precision', ''
    return 'text', ''


@functools.lru_cache(maxsize=64)
def _pg_statement(table: sa.Table, columns: tuple[str, ...],
                  keys: tuple[str, ...] | None) -> tuple[str, tuple[bool, ...]]:
    types = [_pg_type(table.c[c]) for c in columns]
    arrays = ', '.join(f'CAST(%(p{i})b AS {t}[])' for i, (t, _) in enumerate(types))
    select = ', '.join(f'u.c{i}{cast}' for i, (_, cast) in enumerate(types))
    names = ', '.join(f'c{i}' for i in range(len(columns)))
    sql = (f'INSERT INTO {table.name} ({", ".join(columns)}) SELECT {select} '
           f'FROM unnest({arrays}) AS u({names})')
    if keys == ():
        pass  # a plain INSERT: a conflict raises
    elif keys is None:
        sql += ' ON CONFLICT DO NOTHING'
    else:
        update = [c for c in columns if c not in keys]
        sql += f' ON CONFLICT ({", ".join(keys)}) '
        sql += ('DO UPDATE SET ' + ', '.join(f'{c} = EXCLUDED.{c}' for c in update)
                if update else 'DO NOTHING')
    return sql, tuple(isinstance(table.c[c].type, sa.JSON) for c in columns)


@functools.lru_cache(maxsize=64)
def _sqlite_statement(table: sa.Table, columns: tuple[str, ...],
                      keys: tuple[str, ...] | None) -> Any:
    insert = sqlite.insert(table)
    if keys == ():
        return insert
    if keys is None:
        return insert.on_conflict_do_nothing()
    update = {c: insert.excluded[c] for c in columns if c not in keys}
    if not update:
        return insert.on_conflict_do_nothing(index_elements=list(keys))
    return insert.on_conflict_do_update(index_elements=list(keys), set_=update)


def _json(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


def _write(conn: Connection, table: sa.Table, rows: Sequence[Mapping[str, Any]],
           keys: tuple[str, ...] | None) -> None:
    if not rows:
        return
    columns = tuple(rows[0])
    if conn.dialect.name != 'postgresql':
        conn.execute(_sqlite_statement(table, columns, keys), list(rows))
        return
    conn.exec_driver_sql(*pg_write(table, rows, keys))


def pg_write(table: sa.Table, rows: Sequence[Mapping[str, Any]],
             keys: tuple[str, ...] | None) -> tuple[str, dict[str, list[Any]]]:
    """Return the PostgreSQL INSERT of `rows` and its parameters (see `_write` for `keys`)."""
    columns = tuple(rows[0])
    sql, is_json = _pg_statement(table, columns, keys)
    return sql, _arrays(rows, columns, is_json)


def _arrays(rows: Sequence[Mapping[str, Any]], columns: tuple[str, ...],
            is_json: tuple[bool, ...]) -> dict[str, list[Any]]:
    params: dict[str, list[Any]] = {}
    for i, (column, json_column) in enumerate(zip(columns, is_json, strict=True)):
        values = [row[column] for row in rows]
        params[f'p{i}'] = [_json(v) for v in values] if json_column else values
    return params


def upsert(conn: Connection, table: sa.Table, rows: Sequence[Mapping[str, Any]],
           keys: Sequence[str]) -> None:
    """Insert `rows` (all with the same columns, unique keys), or update the rest on conflict."""
    _write(conn, table, rows, tuple(keys))


def insert(conn: Connection, table: sa.Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert `rows`; a unique key already present raises IntegrityError."""
    _write(conn, table, rows, ())


def insert_ignore(conn: Connection, table: sa.Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert `rows`, skipping those whose unique key is already present."""
    _write(conn, table, rows, None)


@functools.lru_cache(maxsize=64)
def _pg_update(table: sa.Table, key: str, columns: tuple[str, ...]) -> tuple[str, tuple[bool, ...]]:
    names = (key, *columns)
    types = [_pg_type(table.c[c]) for c in names]
    arrays = ', '.join(f'CAST(%(p{i})b AS {t}[])' for i, (t, _) in enumerate(types))
    sets = ', '.join(f'{c} = u.c{i + 1}{types[i + 1][1]}' for i, c in enumerate(columns))
    aliases = ', '.join(f'c{i}' for i in range(len(names)))
    sql = (f'UPDATE {table.name} AS t SET {sets} FROM unnest({arrays}) AS u({aliases}) '
           f'WHERE t.{key} = u.c0')
    return sql, tuple(isinstance(table.c[c].type, sa.JSON) for c in names)


@functools.lru_cache(maxsize=64)
def _sqlite_update(table: sa.Table, key: str, columns: tuple[str, ...]) -> Any:
    return (sa.update(table).where(table.c[key] == sa.bindparam('k_' + key))
            .values({c: sa.bindparam(c) for c in columns}))


def update_rows(conn: Connection, table: sa.Table, rows: Sequence[Mapping[str, Any]],
                key: str) -> int:
    """Update the columns `rows` carry, matching on `key`; return how many rows matched."""
    if not rows:
        return 0
    columns = tuple(c for c in rows[0] if c != key)
    if conn.dialect.name != 'postgresql':
        params = [{**{c: row[c] for c in columns}, 'k_' + key: row[key]} for row in rows]
        return conn.execute(_sqlite_update(table, key, columns), params).rowcount
    return conn.exec_driver_sql(*pg_update(table, rows, key)).rowcount


def pg_update(table: sa.Table, rows: Sequence[Mapping[str, Any]],
              key: str) -> tuple[str, dict[str, list[Any]]]:
    """Return the PostgreSQL UPDATE of `rows` (matching on `key`) and its parameters."""
    columns = tuple(c for c in rows[0] if c != key)
    sql, is_json = _pg_update(table, key, columns)
    return sql, _arrays(rows, (key, *columns), is_json)
