"""Index for the seat count

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 13:09:17.251661
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('memberships', schema=None) as batch_op:
        batch_op.create_index('ix_memberships_seats', ['account_id', 'user_type', 'status', 'seasonal_start', 'seasonal_end'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('memberships', schema=None) as batch_op:
        batch_op.drop_index('ix_memberships_seats')

