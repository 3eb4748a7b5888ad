"""Profile and two-factor: time zone, photos, pending email changes, recovery codes, and
TOTP secrets sealed at rest

Revision ID: 0012
Revises: 0010
Create Date: 2026-12-06 01:30:00.000000

TOTP secrets were kept in clear; they are now encrypted (Fernet) with a key derived from
``PROVISIONING_SECRET_KEY``, and this migration seals those already stored.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0012'
down_revision: str | None = '0010'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    with op.batch_alter_table('identities', schema=None) as batch_op:
        batch_op.add_column(sa.Column('time_zone', sa.String(length=64), nullable=True))
        batch_op.alter_column('totp_secret', existing_type=sa.String(length=64),
                              type_=sa.String(length=255), existing_nullable=True)
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
    _seal_stored_secrets()


def _seal_stored_secrets() -> None:
    """Encrypt the TOTP secrets stored in clear (base32, at most 64 characters)."""
    from provisioning.access.codes import seal_secret

    identities = sa.table('identities', sa.column('id', ID),
                          sa.column('totp_secret', sa.String(255)))
    connection = op.get_bind()
    stored = connection.execute(sa.select(identities.c.id, identities.c.totp_secret)
                                .where(identities.c.totp_secret.is_not(None))).all()
    for identity_id, secret in stored:
        if len(secret) <= 64:  # a sealed secret is longer than any base32 one
            connection.execute(identities.update().where(identities.c.id == identity_id)
                               .values(totp_secret=seal_secret(secret)))


def downgrade() -> None:
    from provisioning.access.codes import open_secret

    identities = sa.table('identities', sa.column('id', ID),
                          sa.column('totp_secret', sa.String(255)))
    connection = op.get_bind()
    for identity_id, sealed in connection.execute(
            sa.select(identities.c.id, identities.c.totp_secret)
            .where(identities.c.totp_secret.is_not(None))).all():
        connection.execute(identities.update().where(identities.c.id == identity_id)
                           .values(totp_secret=open_secret(sealed)))
    op.drop_table('profile_photos')
    op.drop_table('email_changes')
    op.drop_index('ix_recovery_codes_identity', table_name='recovery_codes')
    op.drop_table('recovery_codes')
    with op.batch_alter_table('identities', schema=None) as batch_op:
        batch_op.alter_column('totp_secret', existing_type=sa.String(length=255),
                              type_=sa.String(length=64), existing_nullable=True)
        batch_op.drop_column('time_zone')

