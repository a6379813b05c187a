"""Settings of the store, built by the app from its Settings and passed to SqlFleetStore.open."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from lekiwi_fleet_server.domain.robot_state import AlarmThresholds
from lekiwi_fleet_server.domain.shards import check_shard, shard_of

if TYPE_CHECKING:  # settings.py imports this module in its validator
    from lekiwi_fleet_server.settings import Settings


@dataclass(frozen=True, slots=True)
class StoreConfig:
    """How the store judges robots and keeps history; every value has a working default."""

    # An online robot without a heartbeat (or presence change) for this long shows as 'stale'.
    stale_after_s: float = 5.0
    # A robot's aggregate is snapshotted every this many events of its stream.
    snapshot_every: int = 100
    alarms: AlarmThresholds = field(default_factory=AlarmThresholds)
    # Telemetry history: rows older than this are dropped (whole partitions on PostgreSQL).
    telemetry_retention_s: float = 7 * 86_400.0
    # Width of a telemetry partition; fixed when the first partition is made.
    telemetry_partition_s: float = 86_400.0
    # Partitions made ahead of the current one, so ingest never waits for DDL.
    telemetry_partitions_ahead: int = 2
    # A telemetry stamp further than this in the future (a robot clock gone wrong) is replaced
    # by the server's receive time.
    telemetry_max_future_s: float = 300.0
    # Largest number of buckets one telemetry_range query may return.
    telemetry_max_buckets: int = 10_000
    # Engine connection pool (PostgreSQL).
    pool_size: int = 5
    # A boot's committed seqs may form at most this many separate ranges; a message that would
    # open one more is refused (an uplink numbers without gaps: only a broken or hostile robot
    # gets here, and the limit bounds the row it rewrites every batch).
    max_seq_ranges: int = 1024
    # (robot, boot) pairs whose committed seqs the writer keeps in memory (reloaded on demand).
    sequence_cache_pairs: int = 50_000
    # This store writes the robots of shard `shard_index` of `shard_count` (domain/shards.py):
    # it loads and marks offline only those, and shard 0 alone runs telemetry maintenance.
    shard_index: int = 0
    shard_count: int = 1

    def __post_init__(self) -> None:
        if self.stale_after_s <= 0:
            raise ValueError('stale_after_s must be positive')
        if self.snapshot_every < 1:
            raise ValueError('snapshot_every must be at least 1')
        if self.telemetry_partition_s < 60:
            raise ValueError('telemetry_partition_s must be at least 60 s')
        if self.telemetry_retention_s < self.telemetry_partition_s:
            raise ValueError('telemetry_retention_s must be at least one partition wide')
        if self.telemetry_partitions_ahead < 0 or self.telemetry_max_future_s < 0:
            raise ValueError('telemetry_partitions_ahead and telemetry_max_future_s must be >= 0')
        if self.telemetry_max_buckets < 1 or self.pool_size < 1:
            raise ValueError('telemetry_max_buckets and pool_size must be at least 1')
        if self.max_seq_ranges < 1 or self.sequence_cache_pairs < 1:
            raise ValueError('max_seq_ranges and sequence_cache_pairs must be at least 1')
        check_shard(self.shard_index, self.shard_count)

    def owns(self, robot_id: str) -> bool:
        """Tell whether this store's shard owns the robot."""
        return shard_of(robot_id, self.shard_count) == self.shard_index


def store_config(settings: Settings, *, shard_index: int = 0, shard_count: int = 1
                 ) -> StoreConfig:
    """Return the StoreConfig of the settings (raise ValueError for a bad combination)."""
    alarms = AlarmThresholds(
        battery_low_percent=settings.alarm_battery_low_percent,
        battery_clear_percent=settings.alarm_battery_clear_percent,
        temperature_high_c=settings.alarm_temperature_high_c,
        temperature_clear_c=settings.alarm_temperature_clear_c,
        disk_full_fraction=settings.alarm_disk_full_fraction,
        disk_clear_fraction=settings.alarm_disk_clear_fraction)
    return StoreConfig(
        stale_after_s=settings.stale_after_s, snapshot_every=settings.snapshot_every,
        alarms=alarms, telemetry_retention_s=settings.telemetry_retention_s,
        telemetry_partition_s=settings.telemetry_partition_s,
        telemetry_partitions_ahead=settings.telemetry_partitions_ahead,
        telemetry_max_future_s=settings.telemetry_max_future_s,
        telemetry_max_buckets=settings.telemetry_max_buckets, pool_size=settings.db_pool_size,
        max_seq_ranges=settings.max_seq_ranges,
        sequence_cache_pairs=settings.sequence_cache_pairs,
        shard_index=shard_index, shard_count=shard_count)
