"""Releases and the deployments read model.

Revision ID: 0004_releases_deployments
Revises: 0003_robot_sequences
Create Date: 2026-12-01

`releases`: one row per release version with its manifest (the files themselves live once per
digest in the blob store under the data dir). `deployments`: the read model of each deployment
stream (status, robots, the stream version it reflects); `deployment_events`: the
deployments' own event log.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = '0004_releases_deployments'
down_revision: str | None = '0003_robot_sequences'
branch_labels: str | None = None
depends_on: str | None = None

Time = sa.Double


def upgrade() -> None:
    """Create releases, deployments and deployment_events."""
    op.create_table(
        'releases',
        sa.Column('version', sa.String(64), primary_key=True),
        sa.Column('manifest_sha256', sa.String(64), nullable=False),
        sa.Column('manifest', sa.LargeBinary, nullable=False),
        sa.Column('files', sa.Integer, nullable=False),
        sa.Column('total_bytes', sa.BigInteger, nullable=False),
        sa.Column('created_by', sa.String(128), nullable=False),
        sa.Column('created_at', Time, nullable=False),
    )
    op.create_table(
        'deployments',
        sa.Column('deployment_id', sa.String(64), primary_key=True),
        sa.Column('release_version', sa.String(64), nullable=False),
        sa.Column('status', sa.String(16), nullable=False),
        sa.Column('robots', sa.JSON, nullable=False),
        sa.Column('stream_version', sa.Integer, nullable=False),
        sa.Column('created_at', Time, nullable=False),
        sa.Column('updated_at', Time, nullable=False),
    )
    op.create_table(
        'deployment_events',
        sa.Column('deployment_id', sa.String(64), primary_key=True),
        sa.Column('version', sa.Integer, primary_key=True, autoincrement=False),
        sa.Column('type', sa.String(64), nullable=False),
        sa.Column('schema_version', sa.Integer, nullable=False),
        sa.Column('data', sa.JSON, nullable=False),
        sa.Column('recorded_at', Time, nullable=False),
    )


def downgrade() -> None:
    """Drop releases and deployments."""
    op.drop_table('deployment_events')
    op.drop_table('deployments')
    op.drop_table('releases')
