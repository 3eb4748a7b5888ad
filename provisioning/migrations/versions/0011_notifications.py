"""Notifications: each person's settings (with their time zone), in-app entries, one digest per
person and local day, and the push outbox

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06 01:30:00.000000

``notification_digests`` is unique per (identity, local date): the digest run inserts with
ON CONFLICT DO NOTHING, so however many runs race, one digest goes out per person per day.
``push_outbox`` is unique per (notification, channel): each entry is pushed once per channel.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from alembic import op

revision: str = '0011'
down_revision: str | None = '0010'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
JSON = sa.JSON().with_variant(postgresql.JSONB(), 'postgresql')
MOMENT = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        'notification_settings',
        sa.Column('identity_id', ID, nullable=False),
        sa.Column('enabled', sa.Boolean(), nullable=False),
        sa.Column('channel_in_app', sa.Boolean(), nullable=False),
        sa.Column('channel_email', sa.Boolean(), nullable=False),
        sa.Column('channel_mobile', sa.Boolean(), nullable=False),
        sa.Column('channel_browser', sa.Boolean(), nullable=False),
        sa.Column('channel_telegram', sa.Boolean(), nullable=False),
        sa.Column('events', JSON, nullable=False),
        sa.Column('email_mode', sa.String(length=16), nullable=False),
        sa.Column('digest_time', sa.String(length=5), nullable=False),
        sa.Column('time_zone', sa.String(length=64), nullable=False),
        sa.Column('telegram_chat_id', sa.String(length=64), nullable=True),
        sa.Column('updated_at', MOMENT, nullable=False),
        sa.ForeignKeyConstraint(['identity_id'], ['identities.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('identity_id'),
    )
    op.create_index('ix_notification_settings_digest', 'notification_settings',
                    ['time_zone', 'digest_time'],
                    postgresql_where=sa.text("email_mode = 'digest'"),
                    sqlite_where=sa.text("email_mode = 'digest'"))
    op.create_table(
        'notifications',
        sa.Column('id', ID, nullable=False),
        sa.Column('identity_id', ID, nullable=False),
        sa.Column('account_id', ID, nullable=True),
        sa.Column('event', sa.String(length=40), nullable=False),
        sa.Column('text', sa.Text(), nullable=False),
        sa.Column('details', JSON, nullable=False),
        sa.Column('in_app', sa.Boolean(), nullable=False),
        sa.Column('digest_pending', sa.Boolean(), nullable=False),
        sa.Column('created_at', MOMENT, nullable=False),
        sa.Column('read_at', MOMENT, nullable=True),
        sa.ForeignKeyConstraint(['identity_id'], ['identities.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], ondelete='SET NULL'),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_notifications_inbox', 'notifications', ['identity_id', 'id'])
    op.create_index('ix_notifications_digest_pending', 'notifications',
                    ['identity_id', 'created_at'], postgresql_where=sa.text('digest_pending'),
                    sqlite_where=sa.text('digest_pending'))
    op.create_table(
        'notification_digests',
        sa.Column('id', ID, nullable=False),
        sa.Column('identity_id', ID, nullable=False),
        sa.Column('local_date', sa.Date(), nullable=False),
        sa.Column('created_at', MOMENT, nullable=False),
        sa.ForeignKeyConstraint(['identity_id'], ['identities.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('identity_id', 'local_date'),
    )
    op.create_table(
        'push_outbox',
        sa.Column('id', ID, nullable=False),
        sa.Column('notification_id', ID, nullable=False),
        sa.Column('channel', sa.String(length=16), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('next_attempt_at', MOMENT, nullable=False),
        sa.Column('claimed_at', MOMENT, nullable=True),
        sa.Column('claim_token', sa.String(length=32), nullable=True),
        sa.Column('last_error', sa.Text(), nullable=True),
        sa.Column('sent_at', MOMENT, nullable=True),
        sa.Column('created_at', MOMENT, nullable=False),
        sa.ForeignKeyConstraint(['notification_id'], ['notifications.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('notification_id', 'channel'),
    )
    op.create_index('ix_push_outbox_due', 'push_outbox', ['status', 'next_attempt_at'])


def downgrade() -> None:
    op.drop_table('push_outbox')
    op.drop_table('notification_digests')
    op.drop_index('ix_notifications_digest_pending', table_name='notifications')
    op.drop_index('ix_notifications_inbox', table_name='notifications')
    op.drop_table('notifications')
    op.drop_index('ix_notification_settings_digest', table_name='notification_settings')
    op.drop_table('notification_settings')
