"""Operator settings reach the store (StoreConfig) and bad combinations fail at start."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from lekiwi_fleet_server.settings import Settings
from lekiwi_fleet_server.store.config import store_config
from lekiwi_fleet_server.store.factory import open_store


def test_environment_reaches_the_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {'STALE_AFTER_S': '9.5', 'SNAPSHOT_EVERY': '7',
                        'TELEMETRY_RETENTION_S': '7200', 'TELEMETRY_PARTITION_S': '3600',
                        'ALARM_BATTERY_LOW_PERCENT': '30', 'ALARM_BATTERY_CLEAR_PERCENT': '35',
                        'MAX_SEQ_RANGES': '3', 'DB_POOL_SIZE': '2'}.items():
        monkeypatch.setenv(f'LEKIWI_{name}', value)
    settings = Settings(data_dir=tmp_path)
    store = open_store(settings)
    try:
        config = store.config
    finally:
        store.close()
    assert (config.stale_after_s, config.snapshot_every, config.telemetry_retention_s,
            config.telemetry_partition_s, config.max_seq_ranges, config.pool_size) == (
        9.5, 7, 7200.0, 3600.0, 3, 2)
    assert (config.alarms.battery_low_percent, config.alarms.battery_clear_percent) == (30, 35)
    assert store_config(settings, shard_index=1, shard_count=2).shard_index == 1


@pytest.mark.parametrize('bad', [
    {'telemetry_retention_s': 600, 'telemetry_partition_s': 3600},  # narrower than a partition
    {'alarm_battery_low_percent': 40, 'alarm_battery_clear_percent': 30},
    {'alarm_temperature_high_c': 60, 'alarm_temperature_clear_c': 70},
    {'alarm_disk_full_fraction': 0.8, 'alarm_disk_clear_fraction': 0.9},
    {'snapshot_every': 0}, {'stale_after_s': 0}, {'writer_metrics_port': 70000},
])
def test_bad_combinations_are_refused(bad: dict[str, float]) -> None:
    with pytest.raises(ValidationError):
        Settings(**bad)


def test_blob_dir_defaults_under_the_data_dir(tmp_path: Path) -> None:
    assert Settings(data_dir=tmp_path).resolved_blob_dir == tmp_path / 'blobs'
    assert Settings(data_dir=tmp_path, blob_dir=tmp_path / 'b').resolved_blob_dir == tmp_path / 'b'
