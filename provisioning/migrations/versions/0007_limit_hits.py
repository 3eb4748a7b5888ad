"""Rate limits on the database store: one row per counted attempt

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06 01:00:00.000000

Failed logins (and later other limited actions) are counted per keyed hash of the
email and of the client address; where the broker is Redis the counts live there.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0007'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'limit_hits',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
        sa.Column('key', sa.String(length=64), nullable=False),
        sa.Column('at', sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_limit_hits_key_at', 'limit_hits', ['key', 'at'])


def downgrade() -> None:
    op.drop_index('ix_limit_hits_key_at', table_name='limit_hits')
    op.drop_table('limit_hits')
