"""Billing: currency, pending changes, the recalculation's marker, events once a period

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06 03:20:00.000000

A subscription keeps its currency, the lowering or downgrade waiting for the next period
(``pending_seats``, ``pending_plan``), and when a membership change makes its account due
for recalculation (``recalc_due_at``, indexed for the claim) with when and how often it
was recalculated. A billing event of the recalculation names its period
(``period_start``); the unique key makes it one per account, kind and period. Seat
snapshots keep one count per account and day.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0014'
down_revision: str | None = '0013'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MOMENT = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table('seat_snapshots',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('account_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('taken_on', sa.Date(), nullable=False),
    sa.Column('purchased', sa.Integer(), nullable=False),
    sa.Column('used', sa.Integer(), nullable=False),
    sa.Column('seasonal_used', sa.Integer(), nullable=False),
    sa.Column('free_members', sa.Integer(), nullable=False),
    sa.Column('unused', sa.Integer(), nullable=False),
    sa.Column('taken_at', MOMENT, nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('account_id', 'taken_on', name='uq_seat_snapshots_day')
    )
    with op.batch_alter_table('subscriptions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('currency', sa.String(length=3), server_default='USD',
                                      nullable=False))
        batch_op.add_column(sa.Column('pending_seats', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('pending_plan', sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column('recalc_due_at',
                                      MOMENT,
                                      nullable=True))
        batch_op.add_column(sa.Column('recalculated_at',
                                      MOMENT,
                                      nullable=True))
        batch_op.add_column(sa.Column('recalculations', sa.Integer(), server_default='0',
                                      nullable=False))
        batch_op.create_index('ix_subscriptions_recalc_due', ['recalc_due_at'], unique=False)
    with op.batch_alter_table('billing_events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('period_start',
                                      MOMENT,
                                      nullable=True))
        batch_op.create_unique_constraint('uq_billing_events_period',
                                          ['account_id', 'kind', 'period_start'])


def downgrade() -> None:
    with op.batch_alter_table('billing_events', schema=None) as batch_op:
        batch_op.drop_constraint('uq_billing_events_period', type_='unique')
        batch_op.drop_column('period_start')
    with op.batch_alter_table('subscriptions', schema=None) as batch_op:
        batch_op.drop_index('ix_subscriptions_recalc_due')
        for column in ('recalculations', 'recalculated_at', 'recalc_due_at', 'pending_plan',
                       'pending_seats', 'currency'):
            batch_op.drop_column(column)
    op.drop_table('seat_snapshots')
