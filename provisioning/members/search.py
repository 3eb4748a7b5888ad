"""Finding members by what an admin types: the folded search keys every write path keeps on
a membership, and the prefix condition the member list reads.

One fold, applied in Python on both sides, so SQLite and PostgreSQL answer alike: Unicode
case folding (``ß`` is ``ss``, Cyrillic and Greek fold their cases), then the accents
dropped (NFKD without combining marks: "José" is "jose", "Özgür" is "ozgur", "ё" is "е",
Turkish "İ" is "i"), and Turkish dotless "ı" read as "i", so "isik" finds "Işık" whatever
keyboard typed it. A search matches a prefix of the name the account sees, of that name
from its second word (the family name, mostly), or of the email. Keys compare byte by
byte (``COLLATE "C"`` on PostgreSQL, SQLite's binary order), so a prefix is a range of
one index and nothing the admin types is a wildcard.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    and_,
    bindparam,
    event,
    inspect,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Session, UOWTransaction

from provisioning.members.models import Identity, Invitation, Membership, MemberStatus

NAME_KEY_LENGTH = 200
EMAIL_KEY_LENGTH = 320
_SAME_LETTER = str.maketrans({"ı": "i"})


def fold(text: str) -> str:
    """``text`` as the search compares it: case, accents and spacing left out."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    bare = "".join(char for char in decomposed if not unicodedata.combining(char))
    return " ".join(bare.translate(_SAME_LETTER).split())


def search_keys(name: str, email: str) -> dict[str, str]:
    """A membership's three keys, by column: the name, the name from its second word, the
    email."""
    folded = fold(name)
    return {"search_name": folded[:NAME_KEY_LENGTH],
            "search_surname": folded.partition(" ")[2][:NAME_KEY_LENGTH],
            "search_email": fold(email)[:EMAIL_KEY_LENGTH]}


def matching(text: str) -> ColumnElement[bool] | None:
    """Members whose name, family name or email starts with ``text`` once folded; None
    when nothing is left to search for."""
    needle = fold(text)
    if not needle:
        return None
    # The first string after every string that starts with the needle.
    beyond = needle[:-1] + chr(min(ord(needle[-1]) + 1, 0x10FFFF))
    return or_(*(and_(column >= needle, column < beyond) for column in (
        Membership.search_name, Membership.search_surname, Membership.search_email)))


def seen_name(status: str, identity_name: str, invitation_name: str | None,
              has_login: bool) -> str:
    """The name the account sees (``directory.member_view``): the person's own once they
    joined; before, what the admin wrote, else the identity's if nobody owns it yet."""
    if status != MemberStatus.INVITED.value:
        return identity_name
    return invitation_name or ("" if has_login else identity_name)


def refresh_search_keys(connection: Connection, *, identity_ids: Iterable[int] = (),
                        membership_ids: Iterable[int] = ()) -> None:
    """Recompute the keys of these identities' memberships and of these memberships, for a
    path that changed a name, an email or what the account sees of them: one read, one
    executemany."""
    identities, members = sorted(set(identity_ids)), sorted(set(membership_ids))
    if not identities and not members:
        return
    rows = connection.execute(
        select(Membership.id, Membership.status, Identity.name, Identity.email,
               Identity.password_hash.is_not(None), Invitation.name)
        .join(Identity, Identity.id == Membership.identity_id)
        .outerjoin(Invitation, Invitation.membership_id == Membership.id)
        .where(or_(Membership.identity_id.in_(identities), Membership.id.in_(members))))
    changes = [{"member_key": member_id,
                **search_keys(seen_name(status, name, invitation_name, has_login), email)}
               for member_id, status, name, email, has_login, invitation_name in rows]
    if changes:
        connection.execute(_UPDATE_KEYS, changes)


_UPDATE_KEYS = (update(Membership).where(Membership.id == bindparam("member_key"))
                .values(search_name=bindparam("search_name"),
                        search_surname=bindparam("search_surname"),
                        search_email=bindparam("search_email")))


@event.listens_for(Session, "after_flush")
def _keys_follow_orm_writes(session: Session, _: UOWTransaction) -> None:
    """Every ORM write that changes what a search reads (a new member, an accepted
    invitation, a name or email changed by the person, an admin or an import) refreshes the
    keys in the same transaction; Core bulk paths write the keys themselves."""
    identities: set[int] = set()
    members: set[int] = set()
    for instance in (*session.new, *session.dirty):
        if isinstance(instance, Identity) and _changed(instance, "name", "email"):
            identities.add(instance.id)
        elif isinstance(instance, Membership) and (
                instance in session.new or _joined_or_left_invited(instance)):
            members.add(instance.id)
        elif (isinstance(instance, Invitation) and instance.membership_id is not None
              and _changed(instance, "name")):
            members.add(instance.membership_id)
    if identities or members:
        refresh_search_keys(session.connection(), identity_ids=identities,
                            membership_ids=members)


def _joined_or_left_invited(member: Membership) -> bool:
    """Only joining changes the name the account sees (a disable or an activation does not)."""
    history = inspect(member).attrs["status"].history
    return MemberStatus.INVITED.value in (*history.deleted, *history.added)


def _changed(instance: Any, *names: str) -> bool:
    state = inspect(instance)
    return any(state.attrs[name].history.has_changes() for name in names)
