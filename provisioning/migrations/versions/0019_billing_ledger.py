"""Billing ledger: events and seat snapshots outlive their account; snapshots keyed by day

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-06 06:10:00.000000

Billing events and seat snapshots are the record of what an account was charged and why,
kept as invoices are: deleting an account no longer deletes them (no foreign key to
``accounts``, so no cascade, and no per-row key check when the recalculation writes ten
thousand of them). A seat snapshot is keyed by ``(taken_on, account_id)``: one index
instead of a surrogate key and a unique one, in which a day's rows are one range. On
SQLite, accounts take AUTOINCREMENT ids, so a new account never reuses a deleted one's id
(and its ledger); PostgreSQL's sequences never do.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = '0019'
down_revision: str | None = '0018'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
MOMENT = sa.DateTime(timezone=True)
COUNTS = ('purchased', 'used', 'seasonal_used', 'free_members', 'unused')


def _snapshots(name: str, *, keyed_by_day: bool) -> sa.Table:
    key: list[Any] = (
        [sa.PrimaryKeyConstraint('taken_on', 'account_id', name='pk_seat_snapshots')]
        if keyed_by_day else
        [sa.PrimaryKeyConstraint('id'),
         sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], ondelete='CASCADE'),
         sa.UniqueConstraint('account_id', 'taken_on', name='uq_seat_snapshots_day')])
    columns = ([] if keyed_by_day else [sa.Column('id', ID, nullable=False)])
    return op.create_table(
        name, *columns,
        sa.Column('taken_on', sa.Date(), nullable=False),
        sa.Column('account_id', ID, nullable=False),
        *(sa.Column(count, sa.Integer(), nullable=False) for count in COUNTS),
        sa.Column('taken_at', MOMENT, nullable=False),
        *key)


def _move_snapshots(*, keyed_by_day: bool) -> None:
    _snapshots('seat_snapshots_moved', keyed_by_day=keyed_by_day)
    names = ', '.join(('taken_on', 'account_id', *COUNTS, 'taken_at'))
    op.execute(f"INSERT INTO seat_snapshots_moved ({names}) "  # noqa: S608 - fixed names
               f"SELECT {names} FROM seat_snapshots")
    op.drop_table('seat_snapshots')
    op.rename_table('seat_snapshots_moved', 'seat_snapshots')


def _events(*, account_key: bool) -> sa.Table:
    """billing_events as it is with or without its key to accounts (SQLite rebuilds it)."""
    return sa.Table(
        'billing_events', sa.MetaData(),
        sa.Column('id', ID, nullable=False),
        sa.Column('account_id', ID, nullable=False),
        sa.Column('kind', sa.String(length=32), nullable=False),
        sa.Column('quantity', sa.Integer(), nullable=False),
        sa.Column('details', sa.JSON(), nullable=False),
        sa.Column('created_at', MOMENT, nullable=False),
        sa.Column('period_start', MOMENT, nullable=True),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('account_id', 'kind', 'period_start',
                            name='uq_billing_events_period'),
        sa.Index('ix_billing_events_account', 'account_id', 'created_at'),
        *([sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], ondelete='CASCADE',
                                   name='billing_events_account_id_fkey')]
          if account_key else []))


def upgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        op.drop_constraint('billing_events_account_id_fkey', 'billing_events',
                           type_='foreignkey')
    else:  # SQLite cannot drop a constraint: the table is rebuilt without it
        with op.batch_alter_table('billing_events', recreate='always',
                                  copy_from=_events(account_key=False)):
            pass
        # Without the cascade, a new account must never take a deleted one's id (SQLite
        # gives the highest id again unless told AUTOINCREMENT), or it would read its ledger.
        with op.batch_alter_table('accounts', recreate='always',
                                  table_kwargs={'sqlite_autoincrement': True}):
            pass
    _move_snapshots(keyed_by_day=True)


def downgrade() -> None:
    # The key comes back with its cascade: what the deleted accounts left goes, with what
    # refers to it (SQLite migrates with its keys off, so nothing cascades by itself).
    orphans = "SELECT id FROM billing_events WHERE account_id NOT IN (SELECT id FROM accounts)"
    for table in ('billing_announcements', 'billing_webhooks'):
        op.execute(f"DELETE FROM {table} WHERE event_id IN ({orphans})")  # noqa: S608
    op.execute("DELETE FROM billing_events WHERE account_id NOT IN (SELECT id FROM accounts)")
    op.execute("DELETE FROM seat_snapshots WHERE account_id NOT IN (SELECT id FROM accounts)")
    with op.batch_alter_table('billing_events', copy_from=_events(account_key=False)) as batch:
        batch.create_foreign_key('billing_events_account_id_fkey', 'accounts',
                                 ['account_id'], ['id'], ondelete='CASCADE')
    _move_snapshots(keyed_by_day=False)
    if op.get_bind().dialect.name == 'sqlite':
        with op.batch_alter_table('accounts', recreate='always'):
            pass
