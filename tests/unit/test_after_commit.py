"""Work asked for "after commit" runs once the outer transaction commits, also when it was asked
for inside a savepoint; a savepoint rolled back drops only what was asked for inside it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session

from provisioning.core.db import after_commit


@pytest.fixture
def session() -> Iterator[Session]:
    with Session(create_engine("sqlite://")) as opened:
        opened.execute(text("select 1"))
        yield opened


def test_work_asked_for_in_a_released_savepoint_waits_for_the_outer_commit(session: Session):
    ran: list[str] = []
    with session.begin_nested():
        after_commit(session, lambda: ran.append("inside"))
    assert ran == []
    session.commit()
    assert ran == ["inside"]


def test_a_savepoint_rolled_back_drops_only_its_own_work(session: Session):
    ran: list[str] = []
    after_commit(session, lambda: ran.append("before"))
    with session.begin_nested():
        after_commit(session, lambda: ran.append("kept"))
    with pytest.raises(ValueError), session.begin_nested():
        after_commit(session, lambda: ran.append("dropped"))
        with session.begin_nested():
            after_commit(session, lambda: ran.append("dropped too"))
        raise ValueError
    after_commit(session, lambda: ran.append("after"))
    session.commit()
    assert ran == ["before", "kept", "after"]


def test_a_rollback_of_the_outer_transaction_drops_everything(session: Session):
    ran: list[str] = []
    with session.begin_nested():
        after_commit(session, lambda: ran.append("inside"))
    session.rollback()
    session.execute(text("select 1"))
    session.commit()
    assert ran == []
