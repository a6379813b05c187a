"""Admin changes made by any process reach the running server: announce them, watch for them.

The CLI writes straight to the database, so a server learns of its enrolments, revocations,
token rotations and operator changes only through the database. Each admin write calls
`announce` inside its transaction; `ChangeWatcher` implementations deliver `(kind, key)`
(`('robot', robot_id)`, `('operator', name)`) to a callback in the server:

- PostgreSQL: `pg_notify` in the transaction (delivered when, and only if, it commits) and a
  `LISTEN` connection in a thread of the server (`PgChangeWatcher`). After the listening
  connection was lost, a `('resync', '')` tells the callback that changes may have been missed.
- SQLite (the embedded mode) has no notifications: `SqliteChangeWatcher` polls the credentials
  table's `updated_at` (every admin write about a robot sets it) a few times a second.

Operators are not cached anywhere (every request reads its token's row), so their changes act at
once; they are announced all the same for whoever caches them later.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Connection, make_url

from lekiwi_fleet_server.db.schema import credentials

log = logging.getLogger(__name__)

CHANNEL = 'lekiwi_fleet_changes'
OnChange = Callable[[str, str], None]  # (kind, key); called from the watcher's thread


def announce(conn: Connection, kind: str, key: str) -> None:
    """Tell listening servers that `kind` `key` changed, once this transaction commits."""
    if conn.dialect.name == 'postgresql':
        conn.execute(sa.text('SELECT pg_notify(:channel, :payload)'),
                     {'channel': CHANNEL, 'payload': f'{kind}:{key}'})


def parse(payload: str) -> tuple[str, str]:
    """Return (kind, key) of a notification payload."""
    kind, _sep, key = payload.partition(':')
    return kind, key


class ChangeWatcher(Protocol):
    """Delivers admin changes made by any process to the server's callback."""

    def start(self) -> None: ...

    def stop(self) -> None: ...


class PgChangeWatcher:
    """LISTEN on the change channel in a thread; reconnect (and resync) when the link drops."""

    def __init__(self, url: str, on_change: OnChange, *, retry_s: float = 1.0) -> None:
        # psycopg wants a libpq URL, not SQLAlchemy's postgresql+psycopg:// form.
        self._dsn = make_url(url).set(drivername='postgresql').render_as_string(
            hide_password=False)
        self._on_change = on_change
        self._retry_s = retry_s
        self._stop = threading.Event()
        self._listening = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, timeout_s: float = 10.0) -> None:
        """Start listening; return once LISTEN is in place (or after `timeout_s`)."""
        self._thread = threading.Thread(target=self._run, name='fleet-changes', daemon=True)
        self._thread.start()
        if not self._listening.wait(timeout_s):
            log.error('change watcher: not listening after %.0f s; retrying meanwhile',
                      timeout_s)

    def stop(self) -> None:
        """Stop the thread (it notices within half a second)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)

    def _run(self) -> None:
        import psycopg  # the PostgreSQL driver loads only where PostgreSQL is used

        first = True
        while not self._stop.is_set():
            try:
                with psycopg.connect(self._dsn, autocommit=True) as conn:
                    conn.execute(f'LISTEN {CHANNEL}')
                    self._listening.set()
                    if not first:  # notifications sent while we were away are gone
                        self._on_change('resync', '')
                    first = False
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=0.5):
                            self._on_change(*parse(note.payload))
            except Exception as exc:
                if self._stop.is_set():
                    return
                log.warning('change watcher: %s; reconnecting in %.1f s', exc, self._retry_s)
                self._stop.wait(self._retry_s)


class SqliteChangeWatcher:
    """Poll the credentials table for robots whose row changed (SQLite has no NOTIFY)."""

    def __init__(self, url: str, on_change: OnChange, *, interval_s: float = 0.2,
                 now: Callable[[], float] = time.time) -> None:
        self._engine = sa.create_engine(url, poolclass=sa.NullPool)
        self._on_change = on_change
        self._interval_s = interval_s
        self._now = now
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._seen: dict[str, tuple[str, bool, float]] = {}
        self._watermark = float('-inf')

    def start(self) -> None:
        """Read where the table stands, then poll it in a thread."""
        self._poll(announce_changes=False)
        self._thread = threading.Thread(target=self._run, name='fleet-changes', daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop polling."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)
        self._engine.dispose()

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            try:
                self._poll(announce_changes=True)
            except Exception as exc:  # a locked or missing file: try again next time
                log.warning('change watcher: %s', exc)

    def _poll(self, *, announce_changes: bool) -> None:
        # Rows written within the last few seconds are read again each time: two processes'
        # clocks (and a commit landing after a later-stamped one) may disagree a little.
        since = self._watermark - 5.0
        c = credentials.c
        with self._engine.connect() as conn:
            rows = conn.execute(sa.select(c.robot_id, c.token_sha256, c.revoked, c.updated_at)
                                .where(c.updated_at >= since)).all()
        for robot_id, token_sha256, revoked, updated_at in rows:
            value = (token_sha256, bool(revoked), float(updated_at))
            if self._seen.get(robot_id) != value:
                self._seen[robot_id] = value
                if announce_changes:
                    self._on_change('robot', robot_id)
            self._watermark = max(self._watermark, float(updated_at))
        horizon = self._watermark - 5.0
        self._seen = {k: v for k, v in self._seen.items() if v[2] >= horizon}


def watcher_for(url: str, on_change: OnChange) -> ChangeWatcher | None:
    """Return the watcher of a database URL, None for an in-memory SQLite database."""
    if url.startswith('postgresql'):
        return PgChangeWatcher(url, on_change)
    if url.startswith('sqlite') and url.rstrip('/') not in ('sqlite:', 'sqlite:///:memory:'):
        return SqliteChangeWatcher(url, on_change)
    return None
