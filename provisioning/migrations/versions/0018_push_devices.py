"""Push devices, and indexes for the notifications' retention purge

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-06 03:30:00.000000

A person's phones and browsers get their mobile and browser notifications through
``push_devices`` (a push token, or a Web Push subscription whose keys are sealed). The
purge of old notifications and digest marks finds them by date.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0018'
down_revision: str | None = '0017'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('push_devices',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('identity_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('channel', sa.String(length=16), nullable=False),
    sa.Column('platform', sa.String(length=16), nullable=False),
    sa.Column('address', sa.String(length=1024), nullable=False),
    sa.Column('sealed_keys', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['identity_id'], ['identities.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('identity_id', 'channel', 'address')
    )
    op.create_index('ix_notifications_created', 'notifications', ['created_at'], unique=False)
    op.create_index('ix_notification_digests_date', 'notification_digests', ['local_date'],
                    unique=False)


def downgrade() -> None:
    op.drop_index('ix_notification_digests_date', table_name='notification_digests')
    op.drop_index('ix_notifications_created', table_name='notifications')
    op.drop_table('push_devices')
