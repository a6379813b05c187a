"""Feature flags: their event log, read model and what each robot was sent (issue 20).

Revision ID: 0006_flags
Revises: 0005_accounts
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = '0006_flags'
down_revision: str | None = '0005_accounts'
branch_labels: str | None = None
depends_on: str | None = None

Time = sa.Double


def upgrade() -> None:
    """Create flag_events, flags and flag_deliveries."""
    op.create_table(
        'flag_events',
        sa.Column('flag_name', sa.String(64), primary_key=True),
        sa.Column('version', sa.Integer, primary_key=True, autoincrement=False),
        sa.Column('type', sa.String(64), nullable=False),
        sa.Column('schema_version', sa.Integer, nullable=False),
        sa.Column('data', sa.JSON, nullable=False),
        sa.Column('meta', sa.JSON, nullable=False),
        sa.Column('recorded_at', Time, nullable=False),
    )
    op.create_table(
        'flags',
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
    op.create_table(
        'flag_deliveries',
        sa.Column('robot_id', sa.String(64), primary_key=True),
        sa.Column('boot_id', sa.String(64), nullable=False),
        sa.Column('revision', sa.String(64), nullable=False),
        sa.Column('flags', sa.JSON, nullable=False),
        sa.Column('accepted', sa.Boolean, nullable=False),
        sa.Column('applied', sa.JSON, nullable=False),
        sa.Column('message', sa.Text, nullable=False),
        sa.Column('delivered_at', Time, nullable=False),
    )


def downgrade() -> None:
    """Drop them."""
    op.drop_table('flag_deliveries')
    op.drop_table('flags')
    op.drop_table('flag_events')
