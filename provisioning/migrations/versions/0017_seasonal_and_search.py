"""Seasonal schedule and member search: why a member is inactive, folded search keys

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-06 03:20:00.000000

``memberships.inactive_reason`` says who made a member inactive: an admin (``disabled``)
or the seasonal schedule (``season``), which undoes only its own. The three search keys
(``members.search``) are filled here for the members already there, and indexed with the
account first: on PostgreSQL in the "C" collation, so a folded prefix is an index range.
``ix_memberships_list`` serves the list's keyset pages, ``ix_memberships_season`` the
schedule.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0017'
down_revision: str | None = '0016'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

KEYS = (('search_name', 200), ('search_surname', 200), ('search_email', 320))
BATCH = 5000


def _key_type(length: int) -> sa.types.TypeEngine[str]:
    return sa.String(length).with_variant(sa.String(length, collation='C'), 'postgresql')


def upgrade() -> None:
    with op.batch_alter_table('memberships', schema=None) as batch_op:
        batch_op.add_column(sa.Column('inactive_reason', sa.String(length=16), nullable=True))
        for name, length in KEYS:
            batch_op.add_column(sa.Column(name, _key_type(length), server_default='',
                                          nullable=False))
    _fill_keys()
    # Members made inactive before the schedule existed were disabled by an admin.
    op.execute("UPDATE memberships SET inactive_reason = 'disabled' "
               "WHERE status = 'inactive'")
    with op.batch_alter_table('memberships', schema=None) as batch_op:
        batch_op.create_index('ix_memberships_list', ['account_id', 'id'], unique=False)
        for name, _ in KEYS:
            batch_op.create_index(f'ix_memberships_{name}', ['account_id', name], unique=False)
        batch_op.create_index('ix_memberships_season',
                              ['user_type', 'status', 'seasonal_start', 'seasonal_end'],
                              unique=False)


def _fill_keys() -> None:
    """The keys of the members already there, a batch at a time (the fold is Python's)."""
    from provisioning.members.search import search_keys, seen_name

    connection = op.get_bind()
    rows = sa.text(
        "SELECT m.id, m.status, i.name, i.email, i.password_hash IS NOT NULL, v.name "
        "FROM memberships m JOIN identities i ON i.id = m.identity_id "
        "LEFT JOIN invitations v ON v.membership_id = m.id "
        "WHERE m.id > :after ORDER BY m.id LIMIT :batch")
    write = sa.text("UPDATE memberships SET search_name = :search_name, "
                    "search_surname = :search_surname, search_email = :search_email "
                    "WHERE id = :member_key")
    after = 0
    while True:
        batch = connection.execute(rows, {"after": after, "batch": BATCH}).all()
        if not batch:
            return
        connection.execute(write, [
            {"member_key": member_id,
             **search_keys(seen_name(status, name or "", invited, bool(has_login)), email)}
            for member_id, status, name, email, has_login, invited in batch])
        after = batch[-1][0]


def downgrade() -> None:
    with op.batch_alter_table('memberships', schema=None) as batch_op:
        batch_op.drop_index('ix_memberships_season')
        for name, _ in KEYS:
            batch_op.drop_index(f'ix_memberships_{name}')
        batch_op.drop_index('ix_memberships_list')
        for name, _ in reversed(KEYS):
            batch_op.drop_column(name)
        batch_op.drop_column('inactive_reason')
