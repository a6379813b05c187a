"""The transport a robot's heartbeat says its uplink uses, in the robots' read model (issue 20).

The agent's other figures (its memory, the uplink's ack latency p99) are extra fields of the
heartbeat's `resources`, which the read model already keeps as JSON.

Revision ID: 0007_uplink_transport
Revises: 0006_flags
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = '0007_uplink_transport'
down_revision: str | None = '0006_flags'
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Add robot_current.uplink_transport (nullable: older agents do not report it)."""
    # A nullable column without a default: PostgreSQL adds it without rewriting the table.
    op.add_column('robot_current', sa.Column('uplink_transport', sa.String(16), nullable=True))


def downgrade() -> None:
    """Drop it."""
    op.drop_column('robot_current', 'uplink_transport')
