"""Participants: free users taking part in one lead or customer (R9)

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-06 03:20:00.000000

A free user sees only the leads and customers it takes part in. Each participation is a row
of ``lead_participants`` or ``customer_participants``, deleted with its record or its
membership (ON DELETE CASCADE), so removing a free user cuts its access at once. The
``member_id, record_id`` index lists a free user's records.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0016'
down_revision: str | None = '0015'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
TABLES = (('lead_participants', 'leads'), ('customer_participants', 'customers'))


def upgrade() -> None:
    for table, records in TABLES:
        op.create_table(table,
        sa.Column('id', ID, nullable=False),
        sa.Column('account_id', ID, nullable=False),
        sa.Column('member_id', ID, nullable=False),
        sa.Column('added_by_id', ID, nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('record_id', ID, nullable=False),
        sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['member_id'], ['memberships.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['record_id'], [f'{records}.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('record_id', 'member_id')
        )
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.create_index(f'ix_{table}_member', ['member_id', 'record_id'],
                                  unique=False)


def downgrade() -> None:
    for table, _ in reversed(TABLES):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_index(f'ix_{table}_member')
        op.drop_table(table)
