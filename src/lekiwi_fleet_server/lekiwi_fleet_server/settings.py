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
    writer_shards: int = Field(
        2, ge=1, le=MAX_SHARDS,
        description='With a broker (nats_url): writer shards, each the only writer of its '
                    'share of the robots (by a hash of the robot id), the only consumer of its '
                    'JetStream partition and of its state readings; run one writer role '
                    'process per shard (serve --role writer --shard i), every role with the '
                    'same value. PostgreSQL only, SQLite always has one. Without a broker one '
                    'writer thread commits every robot')
    writer_priority: int = Field(5, ge=0, le=19,
                                 description='Nice steps a writer role process gains over the '
                                             'rest (best effort: needs CAP_SYS_NICE)')
    # -- broker (issue 17): NATS JetStream between gateways and writers --
    nats_url: str | None = Field(
        None, description='NATS server (JetStream enabled) between gateways and writers, '
                          'e.g. nats://127.0.0.1:4222; unset: no broker, commits run in a '
                          'writer thread of the one process')
    gateway_id: str | None = Field(
        None, pattern=r'^[A-Za-z0-9_-]{1,64}$',
        description="This gateway's name on the broker (its ack subject); default: "
                    '<host>-<pid>')
    broker_publish_timeout_s: float = Field(
        5.0, gt=0, description='How long a gateway waits for JetStream to store a batch before '
                               'it holds the batch and retries (robots get no ack meanwhile)')
    broker_ack_wait_s: float = Field(
        30.0, gt=0, description='A writer that took messages and neither acked nor refused '
                                'them within this long (it died) has them redelivered')
    broker_connect_timeout_s: float = Field(30.0, gt=0,
                                            description='How long a role tries NATS at start')

    api_host: str = '127.0.0.1'
    api_port: int = Field(8080, ge=0, le=65535)
    gateway_host: str = '127.0.0.1'
    gateway_port: int = Field(9090, ge=0, le=65535)

    public_url: str | None = Field(
        None, description="The REST API's URL as robots reach it (release downloads); "
                          'default: http://<api_host>:<api_port>')
    deployment_tick_s: float = Field(0.5, gt=0, description='How often rollouts advance')
    flag_tick_s: float = Field(1.0, gt=0, description='How often flags are delivered to '
                               'robots and their guards and migration plans checked')
    flag_guard_cooldown_s: float = Field(30.0, ge=0, description='After a guard tripped, '
                                         'how long its flag is not measured again')
    auth_timeout_s: float = Field(5.0, gt=0)
    presence_timeout_s: float = Field(3.0, gt=0)
    ping_interval_s: float = Field(1.0, gt=0)
    max_frame_bytes: int = Field(65536, ge=256, le=16 * 1024 * 1024)
    send_queue_bytes: int = Field(1024 * 1024, ge=1024,
                                  description='Unsent bytes a robot may leave queued before '
                                              'it is dropped as a slow consumer')
    pre_auth_frames: int = Field(64, ge=1, description='Frames buffered while auth is checked')
    admission_enabled: bool = Field(
        True, description='Take admission requests of robots without a token (issue 18)')
    admission_max_pending: int = Field(100, ge=1, le=100_000,
                                       description='Admission requests waiting at most')
    admission_rate_per_s: float = Field(1.0, gt=0, description='New admission requests a second')
    admission_rate_burst: int = Field(10, ge=1, description='Burst of new admission requests')
    admission_timeout_s: float = Field(
        600.0, gt=0, description='How long a robot waits on its connection for a decision')
    commit_interval_ms: float = Field(
        25.0, gt=0, le=10_000,
        description="Shortest time between two commit starts of one writer shard; a busy "
                    "writer starts its next batch as soon as the last one committed")
    max_batch_messages: int = Field(20_000, ge=1)
    max_pending_messages: int = Field(200_000, ge=1,
                                      description='Uncommitted messages held before new ones '
                                                  'are refused with server_error')
    store_retry_s: float = Field(0.5, gt=0, description='Pause after a failed commit')
    state_flush_interval_s: float = Field(
        1.0, gt=0, le=60,
        description="Longest time a lekiwi-fleet/2 robot's acknowledged heartbeat or teleop "
                    'reading waits in memory before its current-state row is written (one '
                    'statement per flush); below stale_after_s')
    robot_rate_per_s: float = Field(
        500.0, gt=0, le=1_000_000,
        description='Publish frames one robot may send a second on average; more are refused '
                    'with rate_limited (to that robot only)')
    robot_rate_burst: int = Field(2000, ge=1, le=1_000_000,
                                  description='Frames a robot may send at once above its rate')
    robot_max_inflight: int = Field(
        2000, ge=1,
        description='Frames of one robot waiting for their commit; more are refused with '
                    'rate_limited, so one robot never fills its writer shard\'s backlog '
                    '(keep it well below max_pending_messages / writer_shards)')
    command_timeout_s: float = Field(10.0, gt=0)
    bus_queue_updates: int = Field(64, ge=1,
                                   description='Updates a dashboard may lag before it is dropped')
    stream_auth_timeout_s: float = Field(5.0, gt=0)
    bootstrap_admin_token: str | None = Field(None, min_length=16)
    log_level: str = Field('info', pattern='^(critical|error|warning|info|debug)$')
    session_ttl_s: float = Field(8 * 3600.0, gt=0, description='Dashboard login session life')
    login_free_failures: int = Field(5, ge=1, description='Failed logins before slowing down')
    login_base_delay_s: float = Field(1.0, gt=0, description='First lockout; doubles per failure')
    login_max_delay_s: float = Field(300.0, gt=0)
    graphql_max_depth: int = Field(10, ge=2, description='Deepest GraphQL selection allowed')
    graphql_max_cost: int = Field(
        50_000, ge=10, description='GraphQL cost limit: fields, multiplied by list sizes asked')
    dashboard_dir: Path | None = Field(
        None, description='Built dashboard (index.html, assets/); default: dashboard_dist/ '
                          'in the package')

    # Discovery (discovery/): scans, mDNS, server-dialled rosbridge robots, presence flaps.
    discovery_targets: list[str] = Field(
        default_factory=list, description='Hosts and CIDR ranges a scheduled scan probes '
                                          '(JSON list, e.g. ["10.0.0.0/24"])')
    discovery_scan_interval_s: float = Field(
        0.0, ge=0, description='Seconds between scheduled scans of discovery_targets; 0: off')
    discovery_agent_port: int = Field(8765, ge=1, le=65535,
                                      description="Port of the agents' local status endpoint")
    discovery_rosbridge_port: int = Field(9090, ge=1, le=65535,
                                          description='Port of stock rosbridge_server robots')
    discovery_concurrency: int = Field(512, ge=1, le=4096,
                                       description='Probes a scan runs at once')
    discovery_probe_timeout_s: float = Field(1.0, gt=0, le=30,
                                             description='Time one probe may take in all')
    discovery_scan_ttl_s: float = Field(
        900.0, gt=0, description='A scan sighting not confirmed within this long is dropped')
    discovery_mdns: bool = Field(False, description='Browse _lekiwi._tcp over mDNS')
    discovery_mdns_interfaces: list[str] = Field(
        default_factory=list, description='Addresses mDNS browses on; empty: all')
    rosbridge_robots: list[str] = Field(
        default_factory=list, description='Robots with a stock rosbridge_server the server '
                                          'dials, as "robot_id=ws://host:9090/" (JSON list)')
    rosbridge_backoff_cap_s: float = Field(30.0, gt=0)
    presence_stale_s: float = Field(1.5, gt=0, description='Silence before a robot is stale')
    presence_flap_window_s: float = Field(30.0, gt=0)
    presence_flap_threshold: int = Field(
        4, ge=2, description='Online/offline changes within the window that make a robot '
                             'flapping (then reported once per window)')

    # The legacy adapter (robots without the agent, polled over SSH): off until a key is set.
    legacy_ssh_key_file: Path | None = Field(
        None, description="Private key the server polls legacy robots with (from its secrets); "
                          'the legacy poller runs only when it is set')
    legacy_known_hosts_file: Path | None = Field(
        None, description="known_hosts of the legacy robots' host keys; default the user's "
                          '~/.ssh/known_hosts (unknown host keys are refused)')
    legacy_hosts_file: Path | None = Field(
        None, description='Hosts the legacy poller polls, as `import-legacy` writes them; '
                          'default <data_dir>/legacy-hosts.json')
    legacy_poll_interval_s: float = Field(10.0, ge=0.1, le=3600,
                                          description='Time between two legacy poll rounds')
    legacy_poll_timeout_s: float = Field(5.0, gt=0, le=300,
                                         description='Time one host may take to answer a poll')
    legacy_poll_concurrency: int = Field(64, ge=1, le=4096,
                                         description='SSH sessions the poller opens at once')
    legacy_services: str = Field('', pattern=r'^[A-Za-z0-9@._:, -]*$',
                                 description='Comma-separated systemd units whose state a '
                                             'poll reports (a unit not active is an error)')
    legacy_battery_command: str = Field('', max_length=1000,
                                        description='Command printing the battery voltage')
    legacy_version_command: str = Field('', max_length=1000,
                                        description='Command printing the software version')
    # The legacy -> agent migration (legacy/agent_install.py): off until an install command.
    legacy_install_command: str = Field(
        '', max_length=2000, description='Command run over SSH on a legacy robot that a step '
        "of the migration flag reaches, to install and start the agent (the robot's new token "
        'on its stdin; {robot_id}, {server_url} replaced); empty: no migration')
    legacy_uninstall_command: str = Field(
        '', max_length=2000, description='Command run over SSH on the robots of a failed '
        'migration wave (rolls the agent back; {robot_id}, {server_url} replaced)')
    legacy_migration_flag: str = Field(
        'agent_uplink', pattern=r'^[a-z][a-z0-9_.-]{0,63}$',
        description='The staged flag whose steps pace the migration to the agent')
    legacy_agent_server_url: str | None = Field(
        None, description='The gateway as migrated robots reach it ({server_url}); default '
        'ws://<gateway_host>:<gateway_port>/')
    legacy_install_timeout_s: float = Field(300.0, gt=0, le=3600,
                                            description='Time limit of one install over SSH')
    legacy_dial_in_timeout_s: float = Field(
        120.0, gt=0, le=3600, description='After its install, how long a robot has for its '
        'agent to connect before it counts as failed')
    legacy_install_max_failure_rate: float = Field(
        0.2, ge=0, lt=1, description='Share of a migration wave that may fail; over it, the '
        'wave is uninstalled and the flag steps back')

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
        description='Each writer role (serve --role writer) serves its shards\' Prometheus '
                    'metrics on this port + the shard index (0: a free port each); unset: '
                    'writer roles serve none')
    # -- several gateways (broker/presence.py, broker/routing.py; issue 17) --
    redis_url: str | None = Field(
        None, description='Redis holding presence and session ownership, shared by every '
                          'gateway (redis://host:6379/0); unset: in-process (one gateway)')
    presence_ttl_s: float = Field(
        10.0, gt=0, description='A claim of a robot not refreshed this long expires (its '
                                'gateway died): the robot shows offline')

    @model_validator(mode='after')
    def _check(self) -> Settings:
        if self.presence_timeout_s <= IDLE_INTERVALS * self.ping_interval_s:
            # A robot is pinged once idle for 1.5 intervals: it must be pinged before it is
            # declared silent, or a robot that only answers pings would be dropped.
            raise ValueError(f'presence_timeout_s must be longer than {IDLE_INTERVALS} x '
                             'ping_interval_s')
        if self.state_flush_interval_s >= self.stale_after_s:
            # The database's last heartbeat may lag the memory by one flush interval: a robot
            # must never look stale to the API only because its heartbeat waits for a flush.
            raise ValueError('state_flush_interval_s must be shorter than stale_after_s')
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
    def resolved_gateway_id(self) -> str:
        """Return `gateway_id`, else <host>-<pid> (unique while the process lives)."""
        if self.gateway_id:
            return self.gateway_id
        import os
        import re
        import socket

        return re.sub(r'[^A-Za-z0-9_-]', '-', f'{socket.gethostname()}-{os.getpid()}')[:64]

    @property
    def resolved_database_url(self) -> str:
        """Return the configured database URL, or the embedded SQLite file's."""
        if self.database_url:
            return self.database_url
        return f'sqlite:///{(self.data_dir / "fleet.db").resolve()}'

    @property
    def resolved_legacy_hosts_file(self) -> Path:
        """Return the legacy poller's hosts file."""
        return self.legacy_hosts_file or self.data_dir / 'legacy-hosts.json'
