"""Member lifecycle: sessions a disable ends, reassignment jobs, bulk results, audit filters

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06 02:00:00.000000

A disable records when the member's sessions stop being valid in the account
(``memberships.sessions_valid_after``): tokens issued before it stay dead after an
activation. A reassignment job keeps its member and targets in ``reassignments``; a bulk
action keeps each member's outcome in ``job_results``. Audit entries keep the acting
member (``actor_member_id``, filled for the entries already there) and are indexed for the
audit list's filters; an account's jobs are listed by ``ix_jobs_account``; a disable finds
the identity's tokens by ``ix_api_tokens_identity``.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0013'
down_revision: str | None = '0012'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('job_results',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('job_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('item_id', sa.BigInteger(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('code', sa.String(length=32), nullable=True),
    sa.Column('message', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('job_results', schema=None) as batch_op:
        batch_op.create_index('ix_job_results_job', ['job_id', 'status', 'position'], unique=False)

    op.create_table('reassignments',
    sa.Column('job_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('account_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('member_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('removes', sa.Boolean(), nullable=False),
    sa.Column('leads_to', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('contacts_to', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('customers_to', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('tasks_to', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('job_id')
    )
    with op.batch_alter_table('reassignments', schema=None) as batch_op:
        batch_op.create_index('ix_reassignments_member', ['member_id'], unique=False)

    with op.batch_alter_table('audit_entries', schema=None) as batch_op:
        batch_op.add_column(sa.Column('actor_member_id', sa.BigInteger(), nullable=True))
        batch_op.create_index('ix_audit_account_action', ['account_id', 'action', 'id'], unique=False)
        batch_op.create_index('ix_audit_account_actor', ['account_id', 'actor_member_id', 'id'], unique=False)
        batch_op.create_index('ix_audit_account_target', ['account_id', 'target_id', 'id'], unique=False)
    # The entries already written: their actor's membership of the account, where it remains.
    op.execute(
        "UPDATE audit_entries SET actor_member_id = (SELECT memberships.id FROM memberships "
        "WHERE memberships.account_id = audit_entries.account_id "
        "AND memberships.identity_id = audit_entries.actor_id) "
        "WHERE actor_id IS NOT NULL AND account_id IS NOT NULL")

    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.create_index('ix_jobs_account', ['account_id', 'id'], unique=False)

    with op.batch_alter_table('memberships', schema=None) as batch_op:
        batch_op.add_column(sa.Column('sessions_valid_after', sa.DateTime(timezone=True), nullable=True))

    with op.batch_alter_table('api_tokens', schema=None) as batch_op:
        batch_op.create_index('ix_api_tokens_identity', ['identity_id', 'kind'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('api_tokens', schema=None) as batch_op:
        batch_op.drop_index('ix_api_tokens_identity')

    with op.batch_alter_table('memberships', schema=None) as batch_op:
        batch_op.drop_column('sessions_valid_after')

    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_index('ix_jobs_account')

    with op.batch_alter_table('audit_entries', schema=None) as batch_op:
        batch_op.drop_index('ix_audit_account_target')
        batch_op.drop_index('ix_audit_account_actor')
        batch_op.drop_index('ix_audit_account_action')
        batch_op.drop_column('actor_member_id')

    with op.batch_alter_table('reassignments', schema=None) as batch_op:
        batch_op.drop_index('ix_reassignments_member')

    op.drop_table('reassignments')
    with op.batch_alter_table('job_results', schema=None) as batch_op:
        batch_op.drop_index('ix_job_results_job')

    op.drop_table('job_results')
