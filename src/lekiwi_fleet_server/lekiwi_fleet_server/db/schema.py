"""The store's tables (SQLAlchemy Core). Migrations create them; this module describes them.

Write side: `events` (append-only, the source of truth), `event_counter` (assigns global
positions in commit order), `snapshots`, `credentials` and `operators` (secrets never go into the
event log, which cannot forget). Read side (projections of the events, rebuildable by replay):
`robots`, `robot_tags`, `teleop_sessions`, `timeline`, each tracked in `projection_positions`.
Current state that is not event-sourced: `robot_current` (newest heartbeat, teleop status,
reconstructed telemetry), `robot_sequences` (every committed message's sequence number) and the
`telemetry` history (time-partitioned on PostgreSQL).
"""

from __future__ import annotations

import sqlalchemy as sa

from lekiwi_fleet_server.domain.telemetry_codec import TELEMETRY_FIELDS

metadata = sa.MetaData()

Time = sa.Double  # Unix seconds, double precision on both databases

store_meta = sa.Table(
    'store_meta', metadata,
    sa.Column('key', sa.String(64), primary_key=True),
    sa.Column('value', sa.Text, nullable=False),
)

event_counter = sa.Table(
    'event_counter', metadata,
    sa.Column('id', sa.Integer, primary_key=True, autoincrement=False),
    sa.Column('position', sa.BigInteger, nullable=False),
)

events = sa.Table(
    'events', metadata,
    sa.Column('stream_id', sa.String(80), primary_key=True),
    sa.Column('version', sa.Integer, primary_key=True, autoincrement=False),
    sa.Column('position', sa.BigInteger, nullable=False, unique=True),
    sa.Column('type', sa.String(64), nullable=False),
    sa.Column('schema_version', sa.Integer, nullable=False),
    sa.Column('data', sa.JSON, nullable=False),
    sa.Column('metadata', sa.JSON, nullable=False),
    # The idempotency key of the robot message that caused the event (NULL for events no robot
    # message caused), promoted out of `metadata` so a unique index can guard it. One message can
    # cause several events (a heartbeat: a version change and an alarm), numbered by `seq_part`.
    sa.Column('robot_id', sa.String(64), nullable=True),
    sa.Column('boot_id', sa.String(64), nullable=True),
    sa.Column('seq', sa.BigInteger, nullable=True),
    sa.Column('seq_part', sa.SmallInteger, nullable=False, server_default='0'),
    sa.Column('recorded_at', Time, nullable=False),
    sa.Index('ix_events_message_key', 'robot_id', 'boot_id', 'seq', 'seq_part', unique=True),
)

snapshots = sa.Table(
    'snapshots', metadata,
    sa.Column('stream_id', sa.String(80), primary_key=True),
    sa.Column('version', sa.Integer, nullable=False),
    sa.Column('schema_version', sa.Integer, nullable=False),
    sa.Column('state', sa.JSON, nullable=False),
    sa.Column('taken_at', Time, nullable=False),
)

projection_positions = sa.Table(
    'projection_positions', metadata,
    sa.Column('name', sa.String(64), primary_key=True),
    sa.Column('position', sa.BigInteger, nullable=False),
)

credentials = sa.Table(
    'credentials', metadata,
    sa.Column('robot_id', sa.String(64), primary_key=True),
    sa.Column('token_sha256', sa.String(64), nullable=False),
    sa.Column('revoked', sa.Boolean, nullable=False),
    sa.Column('updated_at', Time, nullable=False),
)

operators = sa.Table(
    'operators', metadata,
    sa.Column('token_sha256', sa.String(64), primary_key=True),
    sa.Column('name', sa.String(128), nullable=False),
    sa.Column('role', sa.String(16), nullable=False),
    sa.Column('created_at', Time, nullable=False),
    sa.Column('revoked', sa.Boolean, nullable=False),
)

robots = sa.Table(
    'robots', metadata,
    sa.Column('robot_id', sa.String(64), primary_key=True),
    sa.Column('version', sa.Integer, nullable=False),  # stream version the row reflects
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
    sa.Index('ix_robots_software_version', 'software_version'),
)

robot_tags = sa.Table(
    'robot_tags', metadata,
    sa.Column('robot_id', sa.String(64), primary_key=True),
    sa.Column('tag', sa.String(64), primary_key=True),
    sa.Index('ix_robot_tags_tag', 'tag'),
)

teleop_sessions = sa.Table(
    'teleop_sessions', metadata,
    sa.Column('robot_id', sa.String(64), primary_key=True),
    sa.Column('session_id', sa.String(128), primary_key=True),
    sa.Column('started_at', Time, nullable=False),
    sa.Column('score', sa.Double, nullable=True),
    sa.Column('ended_at', Time, nullable=True),
    sa.Column('duration_s', sa.Double, nullable=True),
    sa.Column('end_reason', sa.String(64), nullable=True),
    sa.Column('started_position', sa.BigInteger, nullable=True),
    sa.Column('ended_position', sa.BigInteger, nullable=True),
    sa.Index('ix_teleop_sessions_started', 'robot_id', 'started_at'),
)

timeline = sa.Table(
    'timeline', metadata,
    sa.Column('position', sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column('robot_id', sa.String(64), nullable=False),
    sa.Column('type', sa.String(64), nullable=False),
    sa.Column('severity', sa.String(16), nullable=False),
    sa.Column('summary', sa.Text, nullable=False),
    sa.Column('occurred_at', Time, nullable=False),
    sa.Index('ix_timeline_robot_position', 'robot_id', 'position'),
)

robot_current = sa.Table(
    'robot_current', metadata,
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
    sa.Column('telemetry', sa.JSON, nullable=False),  # TelemetryState.to_json()
    sa.Column('telemetry_at', Time, nullable=True),
    sa.Column('uplink_transport', sa.String(16), nullable=True),  # 0007, the heartbeat's own
    # Rewritten by every heartbeat batch: no secondary index and half-empty pages, so PostgreSQL
    # updates rows in place (HOT). See migration 0002.
    postgresql_with={'fillfactor': 50},
)

# Every committed robot message's (boot_id, seq), per robot and boot, as inclusive ranges
# (SeqRanges.to_json(): [[1, 57]] once a boot's first 57 messages are in). `received` is how many
# distinct seqs the ranges hold. Rewritten by every batch that commits a message of the boot, so
# no secondary index and half-empty pages, as robot_current (HOT updates, migration 0003).
robot_sequences = sa.Table(
    'robot_sequences', metadata,
    sa.Column('robot_id', sa.String(64), primary_key=True),
    sa.Column('boot_id', sa.String(64), primary_key=True),
    sa.Column('ranges', sa.JSON, nullable=False),
    sa.Column('received', sa.BigInteger, nullable=False),
    sa.Column('first_seen_at', Time, nullable=False),
    sa.Column('updated_at', Time, nullable=False),
    postgresql_with={'fillfactor': 50},
)

# Telemetry history: one row per TelemetryDelta with the reconstructed full state at that point,
# a column per ResourceUsage field (bucket means in SQL) and `extra` for fields beyond them.
# `sampled_ms` (Unix milliseconds, an integer so TimescaleDB can use it too) is the partition key;
# PostgreSQL requires it in every unique key, so the key is (robot_id, sampled_ms, boot_id, seq),
# which also serves the range query. The migration makes it range-partitioned on PostgreSQL.
telemetry = sa.Table(
    'telemetry', metadata,
    sa.Column('robot_id', sa.String(64), primary_key=True),
    sa.Column('sampled_ms', sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column('boot_id', sa.String(64), primary_key=True),
    sa.Column('seq', sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column('received_at', Time, nullable=False),
    sa.Column('full_snapshot', sa.Boolean, nullable=False),
    sa.Column('complete', sa.Boolean, nullable=False),
    *(sa.Column(name, sa.Double, nullable=True) for name in TELEMETRY_FIELDS),
    sa.Column('extra', sa.JSON, nullable=True),
    postgresql_partition_by='RANGE (sampled_ms)',
)

# Operator accounts with passwords and their browser sessions (migration 0005_accounts). Kept out
# of the event log, like `operators`: password hashes and session secrets must be deletable,
# which an append-only log never is. Only hashes are stored: a session's id and CSRF token reach
# the browser and nowhere else.
accounts = sa.Table(
    'accounts', metadata,
    sa.Column('name', sa.String(64), primary_key=True),
    sa.Column('role', sa.String(16), nullable=False),
    sa.Column('password_hash', sa.String(256), nullable=False),  # argon2id, PHC string
    sa.Column('created_at', Time, nullable=False),
    sa.Column('disabled', sa.Boolean, nullable=False),
)

web_sessions = sa.Table(
    'web_sessions', metadata,
    sa.Column('session_sha256', sa.String(64), primary_key=True),
    sa.Column('account', sa.String(64), nullable=False),
    sa.Column('csrf_sha256', sa.String(64), nullable=False),
    sa.Column('created_at', Time, nullable=False),
    sa.Column('expires_at', Time, nullable=False),
    sa.Column('ended_at', Time, nullable=True),
    sa.Index('ix_web_sessions_account', 'account'),
)

# Releases (manifest in the database, each file once by digest on disk under the data dir) and
# the deployments read model (the fold of each `deployment-<id>` stream, rebuildable by replay).
releases = sa.Table(
    'releases', metadata,
    sa.Column('version', sa.String(64), primary_key=True),
    sa.Column('manifest_sha256', sa.String(64), nullable=False),
    sa.Column('manifest', sa.LargeBinary, nullable=False),
    sa.Column('files', sa.Integer, nullable=False),
    sa.Column('total_bytes', sa.BigInteger, nullable=False),
    sa.Column('created_by', sa.String(128), nullable=False),
    sa.Column('created_at', Time, nullable=False),
)

deployments = sa.Table(
    'deployments', metadata,
    sa.Column('deployment_id', sa.String(64), primary_key=True),
    sa.Column('release_version', sa.String(64), nullable=False),
    sa.Column('status', sa.String(16), nullable=False),
    sa.Column('robots', sa.JSON, nullable=False),
    sa.Column('stream_version', sa.Integer, nullable=False),
    sa.Column('created_at', Time, nullable=False),
    sa.Column('updated_at', Time, nullable=False),
)

# Deployment streams' events. A log of their own: the robots' projections fold every event of
# `events` by robot id, and a deployment is an aggregate of another kind; keeping its events
# apart means replaying one log never touches the other. Same rules: append-only, primary key
# (deployment_id, version), so a concurrent append conflicts.
deployment_events = sa.Table(
    'deployment_events', metadata,
    sa.Column('deployment_id', sa.String(64), primary_key=True),
    sa.Column('version', sa.Integer, primary_key=True, autoincrement=False),
    sa.Column('type', sa.String(64), nullable=False),
    sa.Column('schema_version', sa.Integer, nullable=False),
    sa.Column('data', sa.JSON, nullable=False),
    sa.Column('recorded_at', Time, nullable=False),
)

# Feature flags (issue 20): each flag a stream of its own in `flag_events` (primary key
# (flag_name, version): a concurrent append conflicts; `meta` holds who made the change), the
# `flags` read model (the fold of each stream, rebuildable by replay) and `flag_deliveries`,
# the current state of what each robot was sent and applied (not event-sourced: a robot's
# report is also a robot event on its timeline).
flag_events = sa.Table(
    'flag_events', metadata,
    sa.Column('flag_name', sa.String(64), primary_key=True),
    sa.Column('version', sa.Integer, primary_key=True, autoincrement=False),
    sa.Column('type', sa.String(64), nullable=False),
    sa.Column('schema_version', sa.Integer, nullable=False),
    sa.Column('data', sa.JSON, nullable=False),
    sa.Column('meta', sa.JSON, nullable=False),
    sa.Column('recorded_at', Time, nullable=False),
)

flags = sa.Table(
    'flags', metadata,
    sa.Column('name', sa.String(64), primary_key=True),
    sa.Column('definition', sa.JSON, nullable=False),
    sa.Column('step', sa.Integer, nullable=False),
    sa.Column('percentage', sa.Double, nullable=False),
    sa.Column('tripped', sa.JSON, nullable=False),
    sa.Column('plan', sa.JSON, nullable=True),
    sa.Column('deleted', sa.Boolean, nullable=False),
    sa.Column('stream_version', sa.Integer, nullable=False),
    sa.Column('created_by', sa.String(128), nullable=False),
    sa.Column('updated_by', sa.String(128), nullable=False),
    sa.Column('step_since', Time, nullable=False),
    sa.Column('updated_at', Time, nullable=False),
)

flag_deliveries = sa.Table(
    'flag_deliveries', metadata,
    sa.Column('robot_id', sa.String(64), primary_key=True),
    sa.Column('boot_id', sa.String(64), nullable=False),
    sa.Column('revision', sa.String(64), nullable=False),
    sa.Column('flags', sa.JSON, nullable=False),
    sa.Column('accepted', sa.Boolean, nullable=False),
    sa.Column('applied', sa.JSON, nullable=False),
    sa.Column('message', sa.Text, nullable=False),
    sa.Column('delivered_at', Time, nullable=False),
)
