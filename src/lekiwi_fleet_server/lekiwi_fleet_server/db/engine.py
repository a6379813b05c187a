"""Build the SQLAlchemy engine for a database URL: PostgreSQL via psycopg 3, or SQLite.

SQLite is the embedded default: WAL (readers never block the writer), foreign keys on,
`synchronous=FULL` (a commit is on disk before the gateway acknowledges it: robots delete
acknowledged messages, so an acknowledged commit must survive a power cut), a busy timeout, and
write transactions opened with BEGIN IMMEDIATE so two writers queue for the lock instead of
failing on lock upgrade. Read transactions stay deferred and never wait for the writer.

PostgreSQL connections plan with `random_page_cost` 1.1 (`PG_PLANNER_OPTIONS`) unless the URL
sets libpq `options` itself. The default 4.0 models a spinning disk; with it, the batch UPDATE of
`robot_sequences` (a json_to_recordset of about 100 rows, by the planner's estimate, joined on
the primary key) was planned as a hash join over a sequential scan, reading every row of the
table in every batch: 10,000 rows 60 times a second at 10,000 robots. With 1.1, the cost usual
for SSDs and cached tables, it is an index lookup per row (test_engine.py shows both plans).
"""

from __future__ import annotations

from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.pool import StaticPool

WRITE = 'lekiwi_write'  # execution option of write transactions (BEGIN IMMEDIATE on SQLite)
PG_PLANNER_OPTIONS = '-c random_page_cost=1.1'  # see the module docstring


def _json_dumps(value: Any) -> str:
    # orjson: several times faster than json on the heartbeat path; NaN becomes null.
    return orjson.dumps(value).decode()


def normalize_url(url: str) -> str:
    """Return `url` with PostgreSQL pinned to psycopg 3 (`postgresql+psycopg://`)."""
    parsed = make_url(url)
    if parsed.drivername in ('postgresql', 'postgres', 'postgresql+psycopg2'):
        parsed = parsed.set(drivername='postgresql+psycopg')
    if parsed.get_backend_name() not in ('postgresql', 'sqlite'):
        raise ValueError(f'unsupported database {parsed.get_backend_name()!r}: '
                         'use postgresql+psycopg:// or sqlite:///')
    return parsed.render_as_string(hide_password=False)


def make_engine(url: str, *, pool_size: int = 5, echo: bool = False) -> Engine:
    """Return an engine for `url` set up as the module docstring says."""
    url = normalize_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == 'sqlite':
        return _sqlite_engine(url, echo)
    connect_args: dict[str, Any] = {'connect_timeout': 5}
    if 'options' not in parsed.query:  # libpq options in the URL win
        connect_args['options'] = PG_PLANNER_OPTIONS
    return sa.create_engine(
        url, echo=echo, pool_size=pool_size, max_overflow=pool_size * 2, pool_pre_ping=True,
        json_serializer=_json_dumps, json_deserializer=orjson.loads, connect_args=connect_args,
    )


def _sqlite_engine(url: str, echo: bool) -> Engine:
    database = make_url(url).database
    in_memory = not database or database == ':memory:'
    kwargs: dict[str, Any] = {'connect_args': {'check_same_thread': False, 'timeout': 30}}
    if in_memory:
        kwargs['poolclass'] = StaticPool  # one shared connection, or each one sees its own DB
    engine = sa.create_engine(url, echo=echo, json_serializer=_json_dumps,
                              json_deserializer=orjson.loads, **kwargs)

    @sa.event.listens_for(engine, 'connect')
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Take transaction control from the driver (it would BEGIN lazily and deferred).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        if not in_memory:
            cur.execute('PRAGMA journal_mode=WAL')
        cur.execute('PRAGMA synchronous=FULL')
        cur.execute('PRAGMA foreign_keys=ON')
        cur.execute('PRAGMA busy_timeout=30000')
        cur.close()

    @sa.event.listens_for(engine, 'begin')
    def _on_begin(conn: Connection) -> None:
        write = conn.get_execution_options().get(WRITE, False)
        conn.exec_driver_sql('BEGIN IMMEDIATE' if write else 'BEGIN')

    return engine


def writer(engine: Engine) -> Engine:
    """Return `engine` marked for write transactions (same pool)."""
    return engine.execution_options(**{WRITE: True})


def is_postgresql(engine: Engine | Connection) -> bool:
    """Return True on PostgreSQL."""
    return engine.dialect.name == 'postgresql'
