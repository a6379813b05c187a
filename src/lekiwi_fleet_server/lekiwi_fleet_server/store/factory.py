"""Open the SQL store the settings name (used by the server, its writer process and the CLI)."""

from __future__ import annotations

from lekiwi_fleet_server.settings import Settings
from lekiwi_fleet_server.store.config import StoreConfig
from lekiwi_fleet_server.store.sql_store import SqlFleetStore


def open_store(settings: Settings, *, preload: bool = True) -> SqlFleetStore:
    """Open the SQL store of the settings' database, migrating it first when asked to.

    `preload=False` opens a store for reading only: it loads no robot states and never
    migrates (the writer does both).
    """
    if not settings.database_url:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    return SqlFleetStore.open(settings.resolved_database_url, StoreConfig(),
                              migrate=settings.migrate_on_start and preload, preload=preload)
