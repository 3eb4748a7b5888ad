"""Import parts keep their own counts; no per-row foreign key checks where nothing needs them

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 09:40:00.000000

A part's writer records what it did on the part, so it never waits for the job row
that the planner holds. The staged rows are scratch of their job (purged with it),
and who invited a member is a record of the past (the audit keeps it too): their
foreign keys cost a trigger call per imported row and protect nothing that a
delete could break, since identities and jobs are not deleted under live rows.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSONType = sa.JSON().with_variant(sa.dialects.postgresql.JSONB(), "postgresql")
# SQLite's foreign keys have no names: batch mode names them by this convention.
NAMING = {"fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s"}
DROPPED = (("memberships", "invited_by_id", "identities"),
           ("invitations", "invited_by_id", "identities"),
           ("import_rows", "job_id", "jobs"))


def _constraint(table: str, column: str, referred: str) -> str:
    if op.get_bind().dialect.name == "postgresql":
        return f"{table}_{column}_fkey"
    return NAMING["fk"] % {"table_name": table, "column_0_name": column,
                           "referred_table_name": referred}


def upgrade() -> None:
    with op.batch_alter_table('import_parts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('counts', JSONType, nullable=True))
    for table, column, referred in DROPPED:
        with op.batch_alter_table(table, schema=None, naming_convention=NAMING) as batch_op:
            batch_op.drop_constraint(_constraint(table, column, referred), type_="foreignkey")


def downgrade() -> None:
    ondelete = {"jobs": "CASCADE"}
    for table, column, referred in DROPPED:
        with op.batch_alter_table(table, schema=None, naming_convention=NAMING) as batch_op:
            batch_op.create_foreign_key(_constraint(table, column, referred), referred,
                                        [column], ["id"], ondelete=ondelete.get(referred))
    with op.batch_alter_table('import_parts', schema=None) as batch_op:
        batch_op.drop_column('counts')
