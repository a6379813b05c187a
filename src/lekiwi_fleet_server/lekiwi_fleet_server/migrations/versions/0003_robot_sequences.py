"""Record every committed robot message's sequence number: the robot_sequences table.

Revision ID: 0003_robot_sequences
Revises: 0002_current_state_hot_updates
Create Date: 2026-11-27

One row per (robot, boot): the inclusive ranges of the seqs committed, how many, when the boot's
first and latest messages were committed. Every batch rewrites the rows of the boots it touched,
so the table gets the treatment robot_current has (no secondary index, fillfactor 50 on
PostgreSQL: HOT updates).

Databases migrated from 0002 kept only some messages' keys: events and telemetry rows name
theirs, and robot_current names the newest heartbeat's. Those seqs are backfilled (a
gaps-and-islands query turns them into ranges), so a redelivered event is still recognised as
a duplicate; heartbeats committed before this revision were never recorded one by one, so such
boots show gaps where they were.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = '0003_robot_sequences'
down_revision: str | None = '0002_current_state_hot_updates'
branch_labels: str | None = None
depends_on: str | None = None

# Islands of consecutive seqs per (robot, boot) among the keys stored before this revision.
_ISLANDS = """
SELECT robot_id, boot_id, MIN(seq) AS first, MAX(seq) AS last, MIN(t) AS t0, MAX(t) AS t1
FROM (
    SELECT robot_id, boot_id, seq, t,
           seq - ROW_NUMBER() OVER (PARTITION BY robot_id, boot_id ORDER BY seq) AS island
    FROM (
        SELECT robot_id, boot_id, seq, MIN(t) AS t FROM (
            SELECT robot_id, boot_id, seq, recorded_at AS t FROM events
            WHERE seq IS NOT NULL AND boot_id IS NOT NULL AND robot_id IS NOT NULL
            UNION ALL
            SELECT robot_id, boot_id, seq, received_at AS t FROM telemetry
            UNION ALL
            SELECT robot_id, heartbeat_boot_id AS boot_id, heartbeat_seq AS seq,
                   last_heartbeat_at AS t FROM robot_current
            WHERE heartbeat_boot_id IS NOT NULL AND last_heartbeat_at IS NOT NULL
        ) AS stored
        GROUP BY robot_id, boot_id, seq
    ) AS distinct_keys
) AS numbered
GROUP BY robot_id, boot_id, island
ORDER BY robot_id, boot_id, first
"""


def backfill_rows(islands: Any) -> list[dict[str, Any]]:
    """Return robot_sequences rows of (robot_id, boot_id, first, last, t0, t1) islands."""
    rows: dict[tuple[str, str], dict[str, Any]] = defaultdict(dict)
    for robot_id, boot_id, first, last, t0, t1 in islands:
        row = rows[(robot_id, boot_id)]
        if not row:
            row.update(robot_id=robot_id, boot_id=boot_id, ranges=[], received=0,
                       first_seen_at=t0, updated_at=t1)
        row['ranges'].append([int(first), int(last)])
        row['received'] += int(last) - int(first) + 1
        row['first_seen_at'] = min(row['first_seen_at'], t0)
        row['updated_at'] = max(row['updated_at'], t1)
    return list(rows.values())


def upgrade() -> None:
    """Create robot_sequences and backfill it from the keys stored so far."""
    table = op.create_table(
        'robot_sequences',
        sa.Column('robot_id', sa.String(64), primary_key=True),
        sa.Column('boot_id', sa.String(64), primary_key=True),
        sa.Column('ranges', sa.JSON, nullable=False),
        sa.Column('received', sa.BigInteger, nullable=False),
        sa.Column('first_seen_at', sa.Double, nullable=False),
        sa.Column('updated_at', sa.Double, nullable=False),
    )
    bind = op.get_bind()
    if bind.dialect.name == 'postgresql':
        op.execute('ALTER TABLE robot_sequences SET (fillfactor = 50)')
    rows = backfill_rows(bind.execute(sa.text(_ISLANDS)))
    if rows:
        op.bulk_insert(table, rows)


def downgrade() -> None:
    """Drop robot_sequences."""
    op.drop_table('robot_sequences')
