"""Invitations: no expired_at; emails not yet sent carry their link as a derived link

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 00:20:00.000000

Nothing read ``invitations.expired_at``: an invitation's state comes from its
``expires_at``, so the column and the beat task that wrote it go. The outbox no
longer knows invitations: an email's context names the links the sender derives
(``derived_links``) instead of an ``invitation_nonce``. Emails still to be sent are
rewritten to that form (with the same token: the purpose is the HMAC's old prefix),
so a deploy sends them with their link; sent and failed ones are never rendered again.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = '0008'
down_revision: str | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSONType = sa.JSON().with_variant(sa.dialects.postgresql.JSONB(), "postgresql")
OUTBOX = sa.table("outbox_emails", sa.column("id", sa.BigInteger()),
                  sa.column("status", sa.String()), sa.column("context", JSONType))
FINISHED = ("sent", "failed")
BATCH = 5_000
OLD_KEY = "invitation_nonce"
NEW_KEY = "derived_links"


def _to_derived_link(context: dict[str, Any]) -> dict[str, Any] | None:
    if OLD_KEY not in context:
        return None
    context = dict(context)
    nonce = context.pop(OLD_KEY)
    context[NEW_KEY] = {"link": {"path": "/invitations/{token}", "purpose": "invitation",
                                 "nonce": nonce}}
    return context


def _to_invitation_nonce(context: dict[str, Any]) -> dict[str, Any] | None:
    link = (context.get(NEW_KEY) or {}).get("link")
    if link is None or link.get("purpose") != "invitation":
        return None
    context = {key: value for key, value in context.items() if key != NEW_KEY}
    context[OLD_KEY] = link["nonce"]
    return context


def _rewrite_unsent(rewrite: Callable[[dict[str, Any]], dict[str, Any] | None]) -> None:
    """Rewrite the context of every email still to be sent, a batch of rows at a time."""
    bind = op.get_bind()
    change = (sa.update(OUTBOX).where(OUTBOX.c.id == sa.bindparam("row_id"))
              .values(context=sa.bindparam("new_context")))
    last = 0
    while True:
        rows = bind.execute(
            sa.select(OUTBOX.c.id, OUTBOX.c.context)
            .where(OUTBOX.c.id > last, OUTBOX.c.status.not_in(FINISHED))
            .order_by(OUTBOX.c.id).limit(BATCH)).all()
        if not rows:
            return
        changed = [{"row_id": row_id, "new_context": new}
                   for row_id, context in rows
                   if context and (new := rewrite(context)) is not None]
        if changed:
            bind.execute(change, changed)
        last = rows[-1][0]


def upgrade() -> None:
    with op.batch_alter_table('invitations', schema=None) as batch_op:
        batch_op.drop_column('expired_at')
    _rewrite_unsent(_to_derived_link)


def downgrade() -> None:
    _rewrite_unsent(_to_invitation_nonce)
    with op.batch_alter_table('invitations', schema=None) as batch_op:
        batch_op.add_column(sa.Column('expired_at', sa.DateTime(timezone=True), nullable=True))
