"""`backup` and `restore`: the database (pg_dump / pg_restore, or SQLite's online backup) and the
release blob store, in one directory with a manifest.

A backup directory holds `manifest.json` (what was backed up, the schema revision, the event
count and head position at the start), `fleet.pgdump` (pg_dump's custom format: one consistent
snapshot, taken while the server runs) or `fleet.db` (SQLite's backup API, also consistent on a
live database), and `blobs/` when the blob store exists. Restore goes into an empty database
only (and an empty blob store), then checks the restored log against the manifest.

PostgreSQL credentials go to pg_dump/pg_restore through the environment (PGPASSWORD), never on
their command line, where `ps` would show them.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url

from lekiwi_fleet_server.db.engine import make_engine, normalize_url
from lekiwi_fleet_server.settings import Settings
from lekiwi_fleet_server.store import event_store

MANIFEST = 'manifest.json'
PG_DUMP_FILE = 'fleet.pgdump'
SQLITE_FILE = 'fleet.db'
BLOBS = 'blobs'
FORMAT = 1
Say = Callable[[str], None]


class BackupError(RuntimeError):
    """A backup or restore that could not be done; nothing was changed at the target."""


@dataclass(frozen=True, slots=True)
class Manifest:
    """What a backup holds."""

    format: int
    kind: str  # 'postgresql' or 'sqlite'
    created_at: float
    schema_revision: str | None
    events: int
    head_position: int
    blob_files: int


def _url(settings: Settings) -> URL:
    return make_url(normalize_url(settings.resolved_database_url))


def _libpq_env(url: URL) -> dict[str, str]:
    env = dict(os.environ)
    parts: dict[str, object] = {'PGHOST': url.host, 'PGPORT': url.port, 'PGUSER': url.username,
                                'PGPASSWORD': url.password, 'PGDATABASE': url.database}
    for key, part in parts.items():
        if part is not None:
            env[key] = str(part)
    for name, value in url.query.items():  # sslmode=require and friends
        if name in ('sslmode', 'sslrootcert', 'sslcert', 'sslkey'):
            env['PG' + name.upper()] = str(value)
    return env


def _run(argv: list[str], env: dict[str, str]) -> None:
    tool = shutil.which(argv[0])
    if tool is None:
        raise BackupError(f'{argv[0]} not found: install PostgreSQL client tools '
                          '(Debian: postgresql-client)')
    done = subprocess.run([tool, *argv[1:]], env=env, capture_output=True, text=True,
                          check=False)
    if done.returncode != 0:
        raise BackupError(f'{argv[0]} failed ({done.returncode}): {done.stderr.strip()}')


def _log_position(url: str) -> tuple[str | None, int, int]:
    from lekiwi_fleet_server.migrations import current_revision

    engine = make_engine(url, pool_size=1)
    try:
        with engine.connect() as conn:
            events = int(conn.execute(sa.select(sa.func.count()).select_from(
                event_store.events)).scalar_one())
            head = event_store.head_position(conn)
        return current_revision(engine), events, head
    finally:
        engine.dispose()


def _count_files(root: Path) -> int:
    return sum(1 for p in root.rglob('*') if p.is_file()) if root.is_dir() else 0


def backup(settings: Settings, target: Path, say: Say = print) -> Manifest:
    """Back the database and the blob store up into the new directory `target`."""
    if target.exists() and any(target.iterdir()):
        raise BackupError(f'{target} exists and is not empty')
    url = _url(settings)
    kind = url.get_backend_name()
    revision, events, head = _log_position(url.render_as_string(hide_password=False))
    target.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    if kind == 'postgresql':
        say(f'pg_dump of {url.database} on {url.host}:{url.port or 5432} ({events} events)')
        _run(['pg_dump', '--format=custom', '--no-owner', '--no-privileges',
              f'--file={target / PG_DUMP_FILE}'], _libpq_env(url))
    else:
        source = Path(url.database or '')
        say(f'SQLite online backup of {source} ({events} events)')
        _sqlite_copy(source, target / SQLITE_FILE)
    blob_dir = settings.resolved_blob_dir
    blob_files = 0
    if blob_dir.is_dir():
        say(f'copying blob store {blob_dir}')
        shutil.copytree(blob_dir, target / BLOBS)
        blob_files = _count_files(target / BLOBS)
    manifest = Manifest(FORMAT, kind, time.time(), revision, events, head, blob_files)
    (target / MANIFEST).write_text(json.dumps(asdict(manifest), indent=2) + '\n')
    say(f'backup done in {time.monotonic() - started:.1f} s: {target}')
    return manifest


def read_manifest(source: Path) -> Manifest:
    """Return a backup directory's manifest; raise BackupError when it is not one."""
    try:
        data = json.loads((source / MANIFEST).read_text())
        manifest = Manifest(**data)
    except (OSError, ValueError, TypeError) as exc:
        raise BackupError(f'{source} is not a backup of this server: {exc}') from exc
    if manifest.format != FORMAT:
        raise BackupError(f'backup format {manifest.format} is not {FORMAT}')
    return manifest


def restore(settings: Settings, source: Path, say: Say = print) -> Manifest:
    """Restore a backup into the settings' empty database and blob store; check the log."""
    manifest = read_manifest(source)
    url = _url(settings)
    kind = url.get_backend_name()
    if kind != manifest.kind:
        raise BackupError(f'the backup is of {manifest.kind}, the target database {kind}')
    blob_dir = settings.resolved_blob_dir
    has_blobs = (source / BLOBS).is_dir()
    if has_blobs and blob_dir.exists() and any(blob_dir.iterdir()):
        raise BackupError(f'the blob store {blob_dir} is not empty')
    started = time.monotonic()
    if kind == 'postgresql':
        _check_empty_postgresql(url)
        say(f'pg_restore into {url.database} on {url.host}:{url.port or 5432}')
        _run(['pg_restore', '--no-owner', '--no-privileges', '--exit-on-error',
              '--single-transaction', f'--dbname={url.database}', str(source / PG_DUMP_FILE)],
             _libpq_env(url))
    else:
        target = Path(url.database or '')
        if target.exists() and target.stat().st_size > 0:
            raise BackupError(f'{target} exists: restore into a new database file')
        target.parent.mkdir(parents=True, exist_ok=True)
        say(f'SQLite restore into {target}')
        _sqlite_copy(source / SQLITE_FILE, target)
    if has_blobs:
        say(f'restoring blob store into {blob_dir}')
        blob_dir.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(source / BLOBS, blob_dir, dirs_exist_ok=True)
    _revision, events, head = _log_position(url.render_as_string(hide_password=False))
    # The manifest counted the log just before the dump's snapshot: it may hold more, never less.
    if events < manifest.events or head < manifest.head_position:
        raise BackupError(f'restored {events} events up to position {head}; the backup '
                          f'recorded {manifest.events} up to {manifest.head_position}')
    say(f'restore done in {time.monotonic() - started:.1f} s: {events} events')
    return manifest


def _check_empty_postgresql(url: URL) -> None:
    engine = make_engine(url.render_as_string(hide_password=False), pool_size=1)
    try:
        tables = sa.inspect(engine).get_table_names()
    except sa.exc.SQLAlchemyError as exc:
        raise BackupError(f'cannot reach the target database: {exc}') from exc
    finally:
        engine.dispose()
    if tables:
        raise BackupError(f'the target database is not empty ({len(tables)} tables): '
                          'restore into a new database')


def _sqlite_copy(source: Path, target: Path) -> None:
    if not source.is_file():
        raise BackupError(f'{source} does not exist')
    src = sqlite3.connect(f'file:{source}?mode=ro', uri=True)
    try:
        dst = sqlite3.connect(target)
        try:
            src.backup(dst)  # page by page, consistent even while the server writes
        finally:
            dst.close()
    finally:
        src.close()
