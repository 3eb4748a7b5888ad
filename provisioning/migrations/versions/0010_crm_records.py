"""Records a member owns: leads, contacts, customers, tasks; conversations, notes, messages

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06 01:00:54.950242

``responsible_id`` references memberships with no ON DELETE, so the database refuses to
remove a member that records still point at (R6). Notes and messages keep their author by
identity and name, which outlive the membership.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0010'
down_revision: str | None = '0009'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
OWNED = {'leads': 'name', 'contacts': 'name', 'customers': 'name', 'tasks': 'title'}
ENTRIES = ('notes', 'messages')


def _owned(table: str, label: str) -> None:
    extra = ([sa.Column('due_at', sa.DateTime(timezone=True), nullable=True),
              sa.Column('completed_at', sa.DateTime(timezone=True), nullable=True)]
             if table == 'tasks' else [])
    op.create_table(
        table,
        sa.Column(label, sa.String(length=255), nullable=False),
        *extra,
        sa.Column('id', ID, nullable=False),
        sa.Column('account_id', ID, nullable=False),
        sa.Column('responsible_id', ID, nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['responsible_id'], ['memberships.id']),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index(f'ix_{table}_account', table, ['account_id', 'id'])
    op.create_index(f'ix_{table}_responsible', table, ['responsible_id', 'id'])


def _lead_entries(table: str) -> None:
    op.create_table(
        table,
        sa.Column('id', ID, nullable=False),
        sa.Column('account_id', ID, nullable=False),
        sa.Column('lead_id', ID, nullable=False),
        sa.Column('author_identity_id', ID, nullable=True),
        sa.Column('author_name', sa.String(length=200), nullable=False),
        sa.Column('text', sa.Text(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['lead_id'], ['leads.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index(f'ix_{table}_lead', table, ['lead_id', 'id'])


def upgrade() -> None:
    for table, label in OWNED.items():
        _owned(table, label)
    op.create_table(
        'conversations',
        sa.Column('id', ID, nullable=False),
        sa.Column('account_id', ID, nullable=False),
        sa.Column('lead_id', ID, nullable=False),
        sa.Column('channel', sa.String(length=32), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['lead_id'], ['leads.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_conversations_lead', 'conversations', ['lead_id'])
    for table in ENTRIES:
        _lead_entries(table)


def downgrade() -> None:
    for table in (*ENTRIES, 'conversations', *reversed(OWNED)):
        op.drop_table(table)  # its indexes go with it
