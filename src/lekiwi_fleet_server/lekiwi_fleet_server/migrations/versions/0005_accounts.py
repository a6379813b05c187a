"""Operator accounts with passwords and their browser sessions.

Revision ID: 0005_accounts
Revises: 0004_releases_deployments
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = '0005_accounts'
down_revision: str | None = '0004_releases_deployments'
branch_labels: str | None = None
depends_on: str | None = None

Time = sa.Double


def upgrade() -> None:
    """Create the accounts and web_sessions tables."""
    op.create_table(
        'accounts',
        sa.Column('name', sa.String(64), primary_key=True),
        sa.Column('role', sa.String(16), nullable=False),
        sa.Column('password_hash', sa.String(256), nullable=False),
        sa.Column('created_at', Time, nullable=False),
        sa.Column('disabled', sa.Boolean, nullable=False),
    )
    op.create_table(
        'web_sessions',
        sa.Column('session_sha256', sa.String(64), primary_key=True),
        sa.Column('account', sa.String(64), nullable=False),
        sa.Column('csrf_sha256', sa.String(64), nullable=False),
        sa.Column('created_at', Time, nullable=False),
        sa.Column('expires_at', Time, nullable=False),
        sa.Column('ended_at', Time, nullable=True),
    )
    op.create_index('ix_web_sessions_account', 'web_sessions', ['account'])


def downgrade() -> None:
    """Drop them."""
    op.drop_index('ix_web_sessions_account', 'web_sessions')
    op.drop_table('web_sessions')
    op.drop_table('accounts')
