"""Profile and two-factor: time zone, photos, pending email changes, recovery codes, and
TOTP secrets sealed at rest

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06 01:30:00.000000

TOTP secrets were kept in clear; they are now encrypted (Fernet) with a key derived from
``PROVISIONING_SECRET_KEY``, and this migration seals those already stored.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0012'
down_revision: str | None = '0011'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    # Column by column, never a batch: on SQLite a batch copies ``identities`` and drops the
    # old table, and that drop would cascade to every session and recovery code.
    op.add_column('identities', sa.Column('time_zone', sa.String(length=64), nullable=True))
    _swap_secret_column(sa.String(length=255), seal=True)
    op.create_table(
        'recovery_codes',
        sa.Column('id', ID, nullable=False),
        sa.Column('identity_id', ID, nullable=False),
        sa.Column('code_hash', sa.String(length=64), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('used_at', sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(['identity_id'], ['identities.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_recovery_codes_identity', 'recovery_codes', ['identity_id', 'code_hash'])
    op.create_table(
        'email_changes',
        sa.Column('id', ID, nullable=False),
        sa.Column('identity_id', ID, nullable=False),
        sa.Column('new_email', sa.String(length=320), nullable=False),
        sa.Column('token_nonce', sa.String(length=64), nullable=False),
        sa.Column('token_hash', sa.String(length=64), nullable=False),
        sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['identity_id'], ['identities.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('identity_id'),
        sa.UniqueConstraint('token_hash'),
    )
    op.create_table(
        'profile_photos',
        sa.Column('identity_id', ID, nullable=False),
        sa.Column('size', sa.Integer(), nullable=False),
        sa.Column('media_type', sa.String(length=32), nullable=False),
        sa.Column('etag', sa.String(length=64), nullable=False),
        sa.Column('data', sa.LargeBinary(), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['identity_id'], ['identities.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('identity_id', 'size'),
    )


def _swap_secret_column(kind: sa.String, *, seal: bool) -> None:
    """Replace ``identities.totp_secret`` by a column of ``kind`` holding each secret sealed
    (or opened again): added, filled, the old one dropped, the new one renamed."""
    from provisioning.access.codes import open_secret, seal_secret

    op.add_column('identities', sa.Column('totp_secret_next', kind, nullable=True))
    identities = sa.table('identities', sa.column('id', ID), sa.column('totp_secret', sa.Text),
                          sa.column('totp_secret_next', sa.Text))
    connection = op.get_bind()
    stored = connection.execute(sa.select(identities.c.id, identities.c.totp_secret)
                                .where(identities.c.totp_secret.is_not(None))).all()
    for identity_id, secret in stored:
        connection.execute(identities.update().where(identities.c.id == identity_id).values(
            totp_secret_next=seal_secret(secret) if seal else open_secret(secret)))
    op.drop_column('identities', 'totp_secret')
    op.alter_column('identities', 'totp_secret_next', new_column_name='totp_secret',
                    existing_type=kind, existing_nullable=True)


def downgrade() -> None:
    op.drop_table('profile_photos')
    op.drop_table('email_changes')
    op.drop_index('ix_recovery_codes_identity', table_name='recovery_codes')
    op.drop_table('recovery_codes')
    _swap_secret_column(sa.String(length=64), seal=False)
    op.drop_column('identities', 'time_zone')
