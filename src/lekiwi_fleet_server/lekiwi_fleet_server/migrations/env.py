"""Alembic environment: migrate the connection `upgrade()` hands over, or a URL given with -x."""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from lekiwi_fleet_server.db.engine import make_engine, writer
from lekiwi_fleet_server.db.schema import metadata

config = context.config


def run() -> None:
    """Run the migrations online (offline SQL generation is not supported)."""
    if context.is_offline_mode():
        raise SystemExit('offline migrations are not supported: give a database URL')
    connection = config.attributes.get('connection')
    if connection is not None:
        _migrate(connection)
        return
    url = context.get_x_argument(as_dictionary=True).get('url')
    if not url:
        raise SystemExit('give the database with -x url=... (or use `lekiwi-fleet-server migrate`)')
    engine = make_engine(url)
    try:
        with writer(engine).begin() as conn:
            _migrate(conn)
    finally:
        engine.dispose()


def _migrate(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=metadata,
                      render_as_batch=connection.dialect.name == 'sqlite')
    with context.begin_transaction():
        context.run_migrations()


run()
