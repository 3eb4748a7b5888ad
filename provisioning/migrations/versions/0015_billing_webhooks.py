"""Billing announcements and the billing webhook outbox

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-06 03:30:00.000000

``billing_announcements`` holds one row per billing event once it is announced (the admins'
emails queued, its webhook queued): its primary key makes each event announced once however
many announcers race. The events already there are marked announced, so the upgrade sends
no email about the past. ``billing_webhooks`` is the webhook outbox, one row per event
(``event_id`` unique), claimed under a lease (``claim_token``, ``claimed_until``).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0015'
down_revision: str | None = '0014'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
MOMENT = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        'billing_announcements',
        sa.Column('event_id', ID, nullable=False),
        sa.Column('announced_at', MOMENT, nullable=False),
        sa.ForeignKeyConstraint(['event_id'], ['billing_events.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('event_id'),
    )
    op.execute("INSERT INTO billing_announcements (event_id, announced_at) "
               "SELECT id, created_at FROM billing_events")
    op.create_table(
        'billing_webhooks',
        sa.Column('id', ID, nullable=False),
        sa.Column('event_id', ID, nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('next_attempt_at', MOMENT, nullable=False),
        sa.Column('claim_token', sa.String(length=32), nullable=True),
        sa.Column('claimed_until', MOMENT, nullable=True),
        sa.Column('last_error', sa.Text(), nullable=True),
        sa.Column('delivered_at', MOMENT, nullable=True),
        sa.Column('created_at', MOMENT, nullable=False),
        sa.ForeignKeyConstraint(['event_id'], ['billing_events.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('event_id'),
    )
    with op.batch_alter_table('billing_webhooks', schema=None) as batch_op:
        batch_op.create_index('ix_billing_webhooks_due', ['status', 'next_attempt_at'],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table('billing_webhooks', schema=None) as batch_op:
        batch_op.drop_index('ix_billing_webhooks_due')
    op.drop_table('billing_webhooks')
    op.drop_table('billing_announcements')
