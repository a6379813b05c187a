"""Alembic migrations of the store, runnable from code: `upgrade(engine_or_url)`."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine

from lekiwi_fleet_server.db.engine import make_engine, writer

MIGRATIONS_DIR = Path(__file__).resolve().parent
# Any constant: the key of the PostgreSQL advisory lock that keeps two starting servers from
# migrating at the same time (the second waits, then finds nothing to do).
_ADVISORY_LOCK_KEY = 0x4C4B5746  # 'LKWF'


def alembic_config() -> Config:
    """Return an Alembic config for this package's migrations, with no ini file on disk."""
    cfg = Config()
    cfg.set_main_option('script_location', str(MIGRATIONS_DIR))
    cfg.set_main_option('path_separator', 'os')
    return cfg


def head_revision() -> str:
    """Return the newest revision of the migrations."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    """Return the revision the database is at, None when it was never migrated."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(target: Engine | str, revision: str = 'head') -> None:
    """Migrate the database (an engine or a URL) to `revision`, in one transaction."""
    engine = make_engine(target) if isinstance(target, str) else target
    try:
        cfg = alembic_config()
        with writer(engine).begin() as conn:
            if conn.dialect.name == 'postgresql':
                conn.execute(sa.text('SELECT pg_advisory_xact_lock(:k)'),
                             {'k': _ADVISORY_LOCK_KEY})
            cfg.attributes['connection'] = conn
            command.upgrade(cfg, revision)
    finally:
        if isinstance(target, str):
            engine.dispose()


def downgrade(target: Engine | str, revision: str) -> None:
    """Migrate the database (an engine or a URL) down to `revision`, in one transaction."""
    engine = make_engine(target) if isinstance(target, str) else target
    try:
        cfg = alembic_config()
        with writer(engine).begin() as conn:
            cfg.attributes['connection'] = conn
            command.downgrade(cfg, revision)
    finally:
        if isinstance(target, str):
            engine.dispose()
