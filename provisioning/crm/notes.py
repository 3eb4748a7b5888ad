"""Notes and messages on a lead: written by a member, kept with their author's identity and
name, which stay the same whoever the lead moves to and whether the author is still a member.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from provisioning.access.auth import Actor
from provisioning.core import audit
from provisioning.core.errors import NotFound
from provisioning.core.models import utcnow
from provisioning.core.pages import decode_cursor, encode_cursor, page_size
from provisioning.core.validation import Form
from provisioning.crm.models import Lead, Message, Note
from provisioning.crm.records import KINDS, Caller, acting_member

MAX_TEXT_LENGTH = 10_000
AUTHOR_NAME_LENGTH: int = Note.__table__.c.author_name.type.length  # type: ignore[attr-defined]
LEADS = KINDS["leads"]
Entry = Note | Message


def _lead_in(session: Session, caller: Caller, lead_id: int) -> None:
    """Another account's lead, one deleted, or one a free user does not take part in, is
    not found."""
    found = session.scalar(select(Lead.id).where(Lead.id == lead_id,
                                                 Lead.account_id == caller.account_id,
                                                 *caller.reachable(LEADS)))
    if found is None:
        raise NotFound("No such lead in this account.")


def _columns(model: type[Entry]) -> list[Any]:
    return [model.id, model.lead_id, model.author_identity_id, model.author_name, model.text,
            model.created_at]


def _shaped(row: Any) -> dict[str, Any]:
    entry_id, lead_id, author_id, author_name, text, created_at = row
    return {"id": entry_id, "lead_id": lead_id, "author_id": author_id,
            "author_name": author_name, "text": text, "created_at": created_at}


def _add(session: Session, actor: Actor, account_id: int, lead_id: int, body: Any,
         model: type[Entry], noun: str) -> dict[str, Any]:
    # R9: a free user writes messages on the leads it takes part in, never notes.
    caller = acting_member(session, actor, account_id, LEADS.edit,
                           participant_may=model is Message)
    form = Form(body)
    text = form.text("text", required=True, max_length=MAX_TEXT_LENGTH)
    form.finish()
    _lead_in(session, caller, lead_id)
    # The author's name as it is now: the entry reads the same once the author has left.
    author = (actor.name or actor.email)[:AUTHOR_NAME_LENGTH]
    entry = model(account_id=account_id, lead_id=lead_id, author_identity_id=actor.identity_id,
                  author_name=author, text=text, created_at=utcnow())
    session.add(entry)
    session.flush()
    audit.record(session, account_id=account_id, actor_id=caller.actor.identity_id,
                 actor_label=actor.label, action=f"{noun}.create", target_type=noun,
                 target_id=entry.id, after={"lead_id": lead_id})
    return _shaped([getattr(entry, column.key) for column in _columns(model)])


def _list(session: Session, actor: Actor, account_id: int, lead_id: int, cursor: str | None,
          limit: int | None, model: type[Entry]) -> tuple[list[dict[str, Any]], str | None]:
    caller = acting_member(session, actor, account_id, LEADS.view)
    size = page_size(limit)
    _lead_in(session, caller, lead_id)
    query = select(*_columns(model)).where(model.lead_id == lead_id)
    after = decode_cursor(cursor)
    if after is not None:
        query = query.where(model.id > after)
    rows = session.execute(query.order_by(model.id).limit(size + 1)).all()
    items = [_shaped(row) for row in rows[:size]]
    return items, (encode_cursor(items[-1]["id"]) if len(rows) > size else None)


def add_note(session: Session, actor: Actor, account_id: int, lead_id: int, body: Any
             ) -> dict[str, Any]:
    """A note on a lead, by the caller."""
    return _add(session, actor, account_id, lead_id, body, Note, "note")


def list_notes(session: Session, actor: Actor, account_id: int, lead_id: int,
               cursor: str | None, limit: int | None) -> tuple[list[dict[str, Any]], str | None]:
    """A lead's notes, oldest first, a page at a time."""
    return _list(session, actor, account_id, lead_id, cursor, limit, Note)


def add_message(session: Session, actor: Actor, account_id: int, lead_id: int, body: Any
                ) -> dict[str, Any]:
    """A message in a lead's chat, by the caller."""
    return _add(session, actor, account_id, lead_id, body, Message, "message")


def list_messages(session: Session, actor: Actor, account_id: int, lead_id: int,
                  cursor: str | None, limit: int | None
                  ) -> tuple[list[dict[str, Any]], str | None]:
    """A lead's messages, oldest first, a page at a time."""
    return _list(session, actor, account_id, lead_id, cursor, limit, Message)
