"""Open the SQL store the settings name (used by the server, its writer process and the CLI)."""

from __future__ import annotations

from lekiwi_fleet_server.settings import Settings
from lekiwi_fleet_server.store.config import store_config
from lekiwi_fleet_server.store.sql_store import SqlFleetStore


def open_store(settings: Settings, *, preload: bool = True, shard_index: int = 0,
               shard_count: int = 1) -> SqlFleetStore:
    """Open the SQL store of the settings' database, migrating it first when asked to.

    `preload=False` opens a store for reading only: it loads no robot states and never
    migrates (the writer does both). A writer process opens the store of its shard
    (`shard_index` of `shard_count`); only shard 0 migrates.
    """
    if not settings.database_url:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    config = store_config(settings, shard_index=shard_index, shard_count=shard_count)
    return SqlFleetStore.open(settings.resolved_database_url, config,
                              migrate=settings.migrate_on_start and preload and shard_index == 0,
                              preload=preload)
