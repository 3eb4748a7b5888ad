"""Invite path: the subscription counts the seats its full members take

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24 09:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('subscriptions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('full_seats_taken', sa.Integer(), server_default='0',
                                      nullable=False))
    # Start from the truth: full members invited or active (R7).
    op.execute(
        "UPDATE subscriptions SET full_seats_taken = ("
        "SELECT count(*) FROM memberships"
        " WHERE memberships.account_id = subscriptions.account_id"
        " AND memberships.user_type = 'full'"
        " AND memberships.status IN ('invited', 'active'))"
    )


def downgrade() -> None:
    with op.batch_alter_table('subscriptions', schema=None) as batch_op:
        batch_op.drop_column('full_seats_taken')
