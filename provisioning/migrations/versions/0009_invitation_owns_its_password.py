"""An invitation keeps the name and the initial password its admin gave

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 01:00:00.000000

An admin-set initial password used to be written on the identity at once, so an admin of
one account could set the password of a person another account knows. It now waits on
the invitation and becomes the identity's only when that invitation is accepted. The name
the admin wrote is what the account sees until the person joins.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0009'
down_revision: str | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('invitations', schema=None) as batch_op:
        batch_op.add_column(sa.Column('name', sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column('initial_password_hash', sa.String(length=255),
                                      nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('invitations', schema=None) as batch_op:
        batch_op.drop_column('initial_password_hash')
        batch_op.drop_column('name')
