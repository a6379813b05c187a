"""Server settings (pydantic-settings, environment prefix `LEKIWI_`), validated when built."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from lekiwi_fleet_server.domain.presence import IDLE_INTERVALS
from lekiwi_fleet_server.domain.shards import MAX_SHARDS


class Settings(BaseSettings):
    """Everything the fleet server can be told; build it in main(), never at import."""

    model_config = SettingsConfigDict(env_prefix='LEKIWI_', extra='ignore', frozen=True)

    data_dir: Path = Field(Path('.lekiwi-fleet'),
                           description='Directory of the embedded database and other state')
    database_url: str | None = Field(
        None, description='SQLAlchemy URL; default: sqlite:///<data_dir>/fleet.db')

    migrate_on_start: bool = Field(True, description='Apply database migrations at start')
    writer_process: bool = Field(
        True, description="Run the store's writer (committing robot frames, admin writes) in "
                          'a process of its own, on a second core')
    writer_shards: int = Field(
        2, ge=1, le=MAX_SHARDS,
        description='Writer processes, each the only writer of its share of the robots (by '
                    'a hash of the robot id), committing side by side; PostgreSQL only, '
                    'SQLite always has one')
    writer_priority: int = Field(5, ge=0, le=19,
                                 description='Nice steps the writer process gains over the '
                                             'server (best effort: needs CAP_SYS_NICE)')

    api_host: str = '127.0.0.1'
    api_port: int = Field(8080, ge=0, le=65535)
    gateway_host: str = '127.0.0.1'
    gateway_port: int = Field(9090, ge=0, le=65535)

    auth_timeout_s: float = Field(5.0, gt=0)
    presence_timeout_s: float = Field(3.0, gt=0)
    ping_interval_s: float = Field(1.0, gt=0)
    max_frame_bytes: int = Field(65536, ge=256, le=16 * 1024 * 1024)
    send_queue_bytes: int = Field(1024 * 1024, ge=1024,
                                  description='Unsent bytes a robot may leave queued before '
                                              'it is dropped as a slow consumer')
    pre_auth_frames: int = Field(64, ge=1, description='Frames buffered while auth is checked')
    commit_interval_ms: float = Field(
        25.0, gt=0, le=10_000,
        description="Shortest time between two commit starts of one writer shard; a busy "
                    "writer starts its next batch as soon as the last one committed")
    max_batch_messages: int = Field(20_000, ge=1)
    max_pending_messages: int = Field(200_000, ge=1,
                                      description='Uncommitted messages held before new ones '
                                                  'are refused with server_error')
    store_retry_s: float = Field(0.5, gt=0, description='Pause after a failed commit')
    command_timeout_s: float = Field(10.0, gt=0)
    bus_queue_updates: int = Field(64, ge=1,
                                   description='Updates a dashboard may lag before it is dropped')
    stream_auth_timeout_s: float = Field(5.0, gt=0)
    bootstrap_admin_token: str | None = Field(None, min_length=16)
    log_level: str = Field('info', pattern='^(critical|error|warning|info|debug)$')

    # -- the store's thresholds (store/config.py, domain/robot_state.py's AlarmThresholds) --
    stale_after_s: float = Field(
        5.0, gt=0, description="An online robot without a heartbeat this long shows as 'stale'")
    snapshot_every: int = Field(100, ge=1,
                                description="Events of a robot's stream between two snapshots "
                                            'of its aggregate (shorter start-up replay)')
    telemetry_retention_s: float = Field(
        7 * 86_400.0, gt=0, description='Telemetry history older than this is dropped (whole '
                                        'partitions on PostgreSQL)')
    telemetry_partition_s: float = Field(
        86_400.0, ge=60, description='Width of a telemetry partition (PostgreSQL); fixed when '
                                     'the first partition is made')
    telemetry_partitions_ahead: int = Field(
        2, ge=0, description='Telemetry partitions made ahead of the current one')
    telemetry_max_future_s: float = Field(
        300.0, ge=0, description="A telemetry stamp this far ahead of the server's clock is "
                                 'replaced by the receive time')
    telemetry_max_buckets: int = Field(10_000, ge=1,
                                       description='Most buckets one telemetry query returns')
    db_pool_size: int = Field(5, ge=1, description='Connections per engine pool (PostgreSQL)')
    max_seq_ranges: int = Field(
        1024, ge=1, description="Separate ranges a boot's committed seqs may form before a "
                                'message opening one more is refused')
    sequence_cache_pairs: int = Field(
        50_000, ge=1, description='(robot, boot) pairs whose committed seqs a writer caches')
    alarm_battery_low_percent: float = Field(15.0, ge=0, le=100,
                                             description='Battery alarm raised below this')
    alarm_battery_clear_percent: float = Field(20.0, ge=0, le=100,
                                               description='Battery alarm cleared above this')
    alarm_temperature_high_c: float = Field(80.0, description='Temperature alarm raised above')
    alarm_temperature_clear_c: float = Field(75.0, description='Temperature alarm cleared below')
    alarm_disk_full_fraction: float = Field(0.95, gt=0, le=1,
                                            description='Disk alarm raised above this share used')
    alarm_disk_clear_fraction: float = Field(0.90, gt=0, le=1,
                                             description='Disk alarm cleared below this share')
    # -- operations --
    blob_dir: Path | None = Field(
        None, description='Release blob store; default: <data_dir>/blobs (backed up with the '
                          'database when present)')
    writer_metrics_port: int | None = Field(
        None, ge=0, le=65535,
        description='Each writer process serves Prometheus metrics on this port + its shard '
                    'index (0: a free port each); unset: writers serve none')

    @model_validator(mode='after')
    def _check(self) -> Settings:
        if self.presence_timeout_s <= IDLE_INTERVALS * self.ping_interval_s:
            # A robot is pinged once idle for 1.5 intervals: it must be pinged before it is
            # declared silent, or a robot that only answers pings would be dropped.
            raise ValueError(f'presence_timeout_s must be longer than {IDLE_INTERVALS} x '
                             'ping_interval_s')
        # The store checks its own combinations (retention >= one partition, alarm clear
        # levels beyond raise levels): build its config once so a bad one fails here, at start.
        from lekiwi_fleet_server.store.config import store_config

        store_config(self)
        return self

    @property
    def resolved_blob_dir(self) -> Path:
        """Return the release blob store's directory: `blob_dir`, else <data_dir>/blobs."""
        return self.blob_dir if self.blob_dir is not None else self.data_dir / 'blobs'

    @property
    def resolved_writer_shards(self) -> int:
        """Return how many writers the store gets: `writer_shards`, but one on SQLite."""
        # SQLite locks the whole database for a write: a second writer would only wait.
        return 1 if self.resolved_database_url.startswith('sqlite') else self.writer_shards

    @property
    def resolved_database_url(self) -> str:
        """Return the configured database URL, or the embedded SQLite file's."""
        if self.database_url:
            return self.database_url
        return f'sqlite:///{(self.data_dir / "fleet.db").resolve()}'
