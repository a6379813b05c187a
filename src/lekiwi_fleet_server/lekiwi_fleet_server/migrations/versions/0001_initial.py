"""Initial store schema: event log, snapshots, projections, current state, telemetry history.

Revision ID: 0001_initial
Revises:
Create Date: 2026-11-26

The telemetry table depends on the database: a hypertable where the TimescaleDB extension is
already created in the database, a range-partitioned table on other PostgreSQL (partitions are
made ahead at run time by store/telemetry.py), a plain table on SQLite. The choice is written to
`store_meta` ('telemetry_mode') so the running store knows which retention to use.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = '0001_initial'
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

# Columns of a telemetry row, one per ResourceUsage field, frozen here as of this revision.
TELEMETRY_FIELDS = (
    'cpu_percent', 'load_average_1min', 'memory_used_bytes', 'memory_total_bytes',
    'disk_used_bytes', 'disk_total_bytes', 'temperature_c', 'battery_voltage_v',
    'battery_percent', 'network_tx_bytes_per_s', 'network_rx_bytes_per_s', 'uptime_s',
)
PROJECTIONS = ('robots', 'teleop_sessions', 'timeline')
DEFAULT_PARTITION_MS = 86_400_000  # one day


def telemetry_mode(dialect: str, timescaledb_created: bool) -> str:
    """Return 'timescaledb', 'partitioned' or 'plain' for the telemetry table."""
    if dialect != 'postgresql':
        return 'plain'
    return 'timescaledb' if timescaledb_created else 'partitioned'


def timescale_statements(chunk_ms: int) -> list[str]:
    """Return the statements that turn the telemetry table into a hypertable."""
    return [
        "SELECT create_hypertable('telemetry', 'sampled_ms', "
        f'chunk_time_interval => {int(chunk_ms)}::bigint, if_not_exists => TRUE)',
    ]


def upgrade() -> None:
    """Create every table of the store."""
    bind = op.get_bind()
    dialect = bind.dialect.name
    Time = sa.Double

    op.create_table(
        'store_meta',
        sa.Column('key', sa.String(64), primary_key=True),
        sa.Column('value', sa.Text, nullable=False),
    )
    op.create_table(
        'event_counter',
        sa.Column('id', sa.Integer, primary_key=True, autoincrement=False),
        sa.Column('position', sa.BigInteger, nullable=False),
    )
    op.create_table(
        'events',
        sa.Column('stream_id', sa.String(80), primary_key=True),
        sa.Column('version', sa.Integer, primary_key=True, autoincrement=False),
        sa.Column('position', sa.BigInteger, nullable=False, unique=True),
        sa.Column('type', sa.String(64), nullable=False),
        sa.Column('schema_version', sa.Integer, nullable=False),
        sa.Column('data', sa.JSON, nullable=False),
        sa.Column('metadata', sa.JSON, nullable=False),
        sa.Column('robot_id', sa.String(64), nullable=True),
        sa.Column('boot_id', sa.String(64), nullable=True),
        sa.Column('seq', sa.BigInteger, nullable=True),
        sa.Column('seq_part', sa.SmallInteger, nullable=False, server_default='0'),
        sa.Column('recorded_at', Time, nullable=False),
    )
    op.create_index('ix_events_message_key', 'events', ['robot_id', 'boot_id', 'seq', 'seq_part'],
                    unique=True)
    op.create_table(
        'snapshots',
        sa.Column('stream_id', sa.String(80), primary_key=True),
        sa.Column('version', sa.Integer, nullable=False),
        sa.Column('schema_version', sa.Integer, nullable=False),
        sa.Column('state', sa.JSON, nullable=False),
        sa.Column('taken_at', Time, nullable=False),
    )
    op.create_table(
        'projection_positions',
        sa.Column('name', sa.String(64), primary_key=True),
        sa.Column('position', sa.BigInteger, nullable=False),
    )
    op.create_table(
        'credentials',
        sa.Column('robot_id', sa.String(64), primary_key=True),
        sa.Column('token_sha256', sa.String(64), nullable=False),
        sa.Column('revoked', sa.Boolean, nullable=False),
        sa.Column('updated_at', Time, nullable=False),
    )
    op.create_table(
        'operators',
        sa.Column('token_sha256', sa.String(64), primary_key=True),
        sa.Column('name', sa.String(128), nullable=False),
        sa.Column('role', sa.String(16), nullable=False),
        sa.Column('created_at', Time, nullable=False),
        sa.Column('revoked', sa.Boolean, nullable=False),
    )
    op.create_table(
        'robots',
        sa.Column('robot_id', sa.String(64), primary_key=True),
        sa.Column('version', sa.Integer, nullable=False),
        sa.Column('enrolled_at', Time, nullable=True),
        sa.Column('tags', sa.JSON, nullable=False),
        sa.Column('revoked', sa.Boolean, nullable=False),
        sa.Column('revoked_at', Time, nullable=True),
        sa.Column('online', sa.Boolean, nullable=False),
        sa.Column('presence_at', Time, nullable=True),
        sa.Column('presence_reason', sa.String(64), nullable=True),
        sa.Column('agent_version', sa.String(128), nullable=True),
        sa.Column('software_version', sa.String(128), nullable=True),
        sa.Column('alarms', sa.JSON, nullable=False),
        sa.Column('session_id', sa.String(128), nullable=True),
        sa.Column('session_started_at', Time, nullable=True),
        sa.Column('last_deployment', sa.JSON, nullable=True),
    )
    op.create_index('ix_robots_software_version', 'robots', ['software_version'])
    op.create_table(
        'robot_tags',
        sa.Column('robot_id', sa.String(64), primary_key=True),
        sa.Column('tag', sa.String(64), primary_key=True),
    )
    op.create_index('ix_robot_tags_tag', 'robot_tags', ['tag'])
    op.create_table(
        'teleop_sessions',
        sa.Column('robot_id', sa.String(64), primary_key=True),
        sa.Column('session_id', sa.String(128), primary_key=True),
        sa.Column('started_at', Time, nullable=False),
        sa.Column('score', sa.Double, nullable=True),
        sa.Column('ended_at', Time, nullable=True),
        sa.Column('duration_s', sa.Double, nullable=True),
        sa.Column('end_reason', sa.String(64), nullable=True),
        sa.Column('started_position', sa.BigInteger, nullable=True),
        sa.Column('ended_position', sa.BigInteger, nullable=True),
    )
    op.create_index('ix_teleop_sessions_started', 'teleop_sessions', ['robot_id', 'started_at'])
    op.create_table(
        'timeline',
        sa.Column('position', sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column('robot_id', sa.String(64), nullable=False),
        sa.Column('type', sa.String(64), nullable=False),
        sa.Column('severity', sa.String(16), nullable=False),
        sa.Column('summary', sa.Text, nullable=False),
        sa.Column('occurred_at', Time, nullable=False),
    )
    op.create_index('ix_timeline_robot_position', 'timeline', ['robot_id', 'position'])
    op.create_table(
        'robot_current',
        sa.Column('robot_id', sa.String(64), primary_key=True),
        sa.Column('last_heartbeat_at', Time, nullable=True),
        sa.Column('heartbeat_stamp', Time, nullable=False),
        sa.Column('heartbeat_boot_id', sa.String(64), nullable=True),
        sa.Column('heartbeat_seq', sa.BigInteger, nullable=False),
        sa.Column('heartbeat_sequence', sa.BigInteger, nullable=True),
        sa.Column('state', sa.String(16), nullable=True),
        sa.Column('teleop_active', sa.Boolean, nullable=False),
        sa.Column('teleop_score', sa.Double, nullable=False),
        sa.Column('teleop', sa.JSON, nullable=False),
        sa.Column('teleop_boot_id', sa.String(64), nullable=True),
        sa.Column('teleop_seq', sa.BigInteger, nullable=False),
        sa.Column('teleop_stamp', Time, nullable=False),
        sa.Column('resources', sa.JSON, nullable=False),
        sa.Column('boot_id', sa.String(64), nullable=True),
        sa.Column('last_seq', sa.BigInteger, nullable=True),
        sa.Column('telemetry', sa.JSON, nullable=False),
        sa.Column('telemetry_at', Time, nullable=True),
    )
    op.create_index('ix_robot_current_teleop', 'robot_current', ['teleop_active'])

    timescale = dialect == 'postgresql' and bind.execute(sa.text(
        "SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'")).first() is not None
    mode = telemetry_mode(dialect, timescale)
    partitioning: dict[str, Any] = (
        {'postgresql_partition_by': 'RANGE (sampled_ms)'} if mode == 'partitioned' else {})
    op.create_table(
        'telemetry',
        sa.Column('robot_id', sa.String(64), primary_key=True),
        sa.Column('sampled_ms', sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column('boot_id', sa.String(64), primary_key=True),
        sa.Column('seq', sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column('received_at', Time, nullable=False),
        sa.Column('full_snapshot', sa.Boolean, nullable=False),
        sa.Column('complete', sa.Boolean, nullable=False),
        *(sa.Column(name, sa.Double, nullable=True) for name in TELEMETRY_FIELDS),
        sa.Column('extra', sa.JSON, nullable=True),
        **partitioning,
    )
    if mode == 'timescaledb':  # pragma: no cover - TimescaleDB is not installed on CI
        for statement in timescale_statements(DEFAULT_PARTITION_MS):
            op.execute(statement)

    op.bulk_insert(sa.table('event_counter', sa.column('id'), sa.column('position')),
                   [{'id': 1, 'position': 0}])
    op.bulk_insert(sa.table('projection_positions', sa.column('name'), sa.column('position')),
                   [{'name': name, 'position': 0} for name in PROJECTIONS])
    op.bulk_insert(sa.table('store_meta', sa.column('key'), sa.column('value')), [
        {'key': 'telemetry_mode', 'value': mode},
        {'key': 'telemetry_partition_ms', 'value': str(DEFAULT_PARTITION_MS)},
    ])


def downgrade() -> None:
    """Drop every table of the store."""
    for table in ('telemetry', 'robot_current', 'timeline', 'teleop_sessions', 'robot_tags',
                  'robots', 'operators', 'credentials', 'projection_positions', 'snapshots',
                  'events', 'event_counter', 'store_meta'):
        op.drop_table(table)
