"""The member list's search and filters, on PostgreSQL and on SQLite with the same answers:
prefixes of the name, the family name or the email, accents and case folded in several
scripts, nothing typed is a wildcard, filters combined, keyset pages, the total on demand,
and the search keys kept by every path that writes a name or an email."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from provisioning.core.db import session_scope
from provisioning.core.migrate import upgrade
from provisioning.members.models import Identity, Membership, MemberStatus
from provisioning.members.search import fold
from tests.conftest import AdminAccount, Stack, activate, deactivate
from tests.support.imports import run_import
from tests.support.members import PASSWORD, accept, active_member, set_status

PEOPLE = (  # name, email's first part, what the invite adds
    ("José Álvarez", "jose.alvarez", {"group": "Sales"}),
    ("Özgür Yılmaz", "ozgur", {"group": "Sales"}),
    ("Işık Demir", "isik", {}),
    ("İlker Aydın", "ilker", {"role": "admin"}),
    ("Иван Петров", "ivan", {}),
    ("Ёлка Смирнова", "yolka", {}),
    ("Anna Groß", "anna", {"user_type": "free"}),
    ("100% Sure", "sure1", {}),
    ("100x Sure", "sure2", {}),
    ("Mia Lee", "a_b", {}),
    ("Max Roe", "axb", {}),
)


@pytest.fixture(scope="module")
def stack(make_stack: Any) -> Stack:
    return make_stack()  # the import runs on the worker


@pytest.fixture(params=["postgresql", "sqlite"])
def database(request: pytest.FixtureRequest, stack: Stack, tmp_path: Path) -> Iterator[str]:
    """The API in this process on the stack's PostgreSQL, or on a fresh SQLite file."""
    if request.param == "postgresql":
        yield request.param
        return
    previous = activate({"PROVISIONING_DATABASE_URL": f"sqlite:///{tmp_path / 'search.db'}"})
    upgrade()
    try:
        yield request.param
    finally:
        deactivate(previous)


@pytest.fixture
def people(stack: Stack, database: str) -> tuple[AdminAccount, dict[str, int]]:
    """An account holding everyone of PEOPLE: José and Иван active, José with two-factor."""
    admin = stack.create_account(seats=40)
    tag = uuid.uuid4().hex[:8]
    ids = {}
    for name, local, extra in PEOPLE:
        answer = stack.invite(admin, email=f"{local}.{tag}@example.com", name=name, **extra)
        assert answer.status_code == 201, answer.json
        ids[name] = answer.json["id"]
    for name in ("José Álvarez", "Иван Петров"):
        set_status(ids[name], MemberStatus.ACTIVE)
    with session_scope() as session:
        identity_id = session.get_one(Membership, ids["José Álvarez"]).identity_id
        session.execute(update(Identity).where(Identity.id == identity_id)
                        .values(totp_enabled=True))
    return admin, ids


def listed(stack: Stack, admin: AdminAccount, **params: str) -> dict[str, Any]:
    answer = stack.api.simulate_get(f"/v1/accounts/{admin.id}/users", params=params,
                                    headers=admin.headers)
    assert answer.status_code == 200, answer.json
    return dict(answer.json)


def names(stack: Stack, admin: AdminAccount, **params: str) -> list[str]:
    return [item["name"] for item in listed(stack, admin, **params)["items"]]


@pytest.mark.parametrize(("typed", "found"), [
    ("jose", ["José Álvarez"]), ("JOSÉ Á", ["José Álvarez"]), ("alv", ["José Álvarez"]),
    ("ÖZ", ["Özgür Yılmaz"]), ("yilmaz", ["Özgür Yılmaz"]), ("YILMAZ", ["Özgür Yılmaz"]),
    ("isik", ["Işık Demir"]), ("IŞIK", ["Işık Demir"]), ("ışı", ["Işık Demir"]),
    ("İLKER", ["İlker Aydın"]), ("ilker", ["İlker Aydın"]), ("aydin", ["İlker Aydın"]),
    ("иван", ["Иван Петров"]), ("ИВАН", ["Иван Петров"]), ("петр", ["Иван Петров"]),
    ("елка", ["Ёлка Смирнова"]), ("ЁЛКА", ["Ёлка Смирнова"]), ("yolka", ["Ёлка Смирнова"]),
    ("gross", ["Anna Groß"]), ("GROSS", ["Anna Groß"]),
    ("100", ["100% Sure", "100x Sure"]), ("100%", ["100% Sure"]), ("%", []), ("_", []),
    ("a_b", ["Mia Lee"]), ("a%", []), ("sure", ["100% Sure", "100x Sure"]),
    ("ozgur.", ["Özgür Yılmaz"]), ("vanov", []), ("  ", None),
])
def test_a_prefix_finds_its_people_in_any_case_accent_or_script(
        stack: Stack, people: tuple[AdminAccount, dict[str, int]], typed: str,
        found: list[str] | None):
    admin, ids = people
    everyone = names(stack, admin)
    assert len(everyone) == len(PEOPLE) + 1  # and the admin
    assert names(stack, admin, q=typed) == (everyone if found is None else found)


def test_filters_alone_and_combined(stack: Stack, people: tuple[AdminAccount, dict[str, int]]):
    admin, _ = people
    assert names(stack, admin, status="active") == ["Ada Admin", "José Álvarez", "Иван Петров"]
    assert names(stack, admin, group="sALES") == ["José Álvarez", "Özgür Yılmaz"]
    assert names(stack, admin, group="Nowhere") == []
    assert names(stack, admin, role="ADMIN") == ["Ada Admin", "İlker Aydın"]
    assert names(stack, admin, user_type="free") == ["Anna Groß"]
    assert names(stack, admin, two_factor="true") == ["José Álvarez"]
    assert "José Álvarez" not in names(stack, admin, two_factor="false")
    assert len(names(stack, admin, two_factor="false")) == len(PEOPLE)
    # "i" starts Işık's and İlker's names and Иван's email
    assert names(stack, admin, q="i") == ["Işık Demir", "İlker Aydın", "Иван Петров"]
    assert names(stack, admin, q="i", status="active") == ["Иван Петров"]
    assert names(stack, admin, q="i", role="admin") == ["İlker Aydın"]
    assert names(stack, admin, group="sales", two_factor="true") == ["José Álvarez"]
    assert names(stack, admin, q="o", group="sales", status="invited") == ["Özgür Yılmaz"]
    assert names(stack, admin, q="100", user_type="full", status="invited",
                 two_factor="false") == ["100% Sure", "100x Sure"]


def test_the_total_only_when_asked(stack: Stack, people: tuple[AdminAccount, dict[str, int]]):
    admin, _ = people
    assert "total" not in listed(stack, admin, q="100")
    page = listed(stack, admin, q="100", total="true", limit="1")
    assert page["total"] == 2 and len(page["items"]) == 1 and page["next_cursor"]
    assert listed(stack, admin, total="true", status="active")["total"] == 3
    assert listed(stack, admin, total="false", status="active").get("total") is None


def test_bad_filter_values_name_their_field(stack: Stack,
                                            people: tuple[AdminAccount, dict[str, int]]):
    admin, _ = people
    users = f"/v1/accounts/{admin.id}/users"
    for params, fields in (({"status": "sleeping"}, ["status"]),
                           ({"user_type": "robot"}, ["user_type"]),
                           ({"two_factor": "maybe"}, ["two_factor"]),
                           ({"total": "perhaps"}, ["total"]),
                           ({"q": "x" * 101}, ["q"]),
                           ({"cursor": "garbage!"}, ["cursor"]),
                           ({"status": "x", "user_type": "y"}, ["status", "user_type"])):
        answer = stack.api.simulate_get(users, params=params, headers=admin.headers)
        assert answer.status_code == 422, (params, answer.json)
        assert answer.headers["content-type"].startswith("application/problem+json")
        assert [e["field"] for e in answer.json["errors"]] == fields


def test_pages_cover_everyone_once_in_a_stable_order_while_members_arrive(
        stack: Stack, people: tuple[AdminAccount, dict[str, int]]):
    admin, _ = people
    before = [item["id"] for item in listed(stack, admin, limit="1000")["items"]]
    seen: list[int] = []
    cursor = None
    arrived = 0
    while True:
        page = listed(stack, admin, limit="3", **({"cursor": cursor} if cursor else {}))
        seen += [item["id"] for item in page["items"]]
        if arrived < 5:  # someone is invited between two pages
            answer = stack.invite(admin, email=f"late{arrived}.{uuid.uuid4().hex[:6]}@x.com")
            assert answer.status_code == 201
            arrived += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(seen) and len(seen) == len(set(seen))
    assert seen[:len(before)] == before
    assert len(seen) == len(before) + arrived  # those who came in are on the later pages
    # the same walk with a search: only matches, still in order, each once
    walked: list[str] = []
    cursor = None
    while True:
        page = listed(stack, admin, q="i", limit="1", **({"cursor": cursor} if cursor else {}))
        walked += [item["name"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert walked == ["Işık Demir", "İlker Aydın", "Иван Петров"]


def test_the_keys_follow_accept_profile_and_admin_changes(stack: Stack, database: str):
    admin = stack.create_account(seats=10)
    tag = uuid.uuid4().hex[:8]
    invited = stack.invite(admin, email=f"nameless.{tag}@example.com",
                           initial_password=PASSWORD)
    assert names(stack, admin, q="zoe") == []
    assert accept(stack, invited.json["id"], name="Zoë Quinn").status_code == 200
    assert names(stack, admin, q="zoe") == ["Zoë Quinn"]
    assert names(stack, admin, q="quinn") == ["Zoë Quinn"]
    _, _, headers = active_member(stack, admin, name="Before Name",
                                  email=f"before.{tag}@example.com")
    assert stack.api.simulate_patch("/v1/me", json={"name": "Renée Fox"},
                                    headers=headers).status_code == 200
    assert names(stack, admin, q="renee") == ["Renée Fox"]
    assert names(stack, admin, q="before n") == []
    pending = stack.invite(admin, email=f"pending.{tag}@example.com", name="Old Name")
    changed = stack.api.simulate_patch(f"/v1/accounts/{admin.id}/users/{pending.json['id']}",
                                       json={"name": "Ñoño Pérez"}, headers=admin.headers)
    assert changed.status_code == 200, changed.json
    assert names(stack, admin, q="nono") == ["Ñoño Pérez"]
    assert names(stack, admin, q="perez") == ["Ñoño Pérez"]
    assert names(stack, admin, q="old") == []


def test_the_keys_follow_an_import(stack: Stack):
    admin = stack.create_account(seats=10)
    tag = uuid.uuid4().hex[:8]
    body = (f"name,email\nŞule Çelik,sule.{tag}@example.com\n"
            f"Ярослав Ким,yar.{tag}@example.com\n").encode()
    assert run_import(stack, admin, body)["summary"]["created"] == 2
    assert names(stack, admin, q="sule") == ["Şule Çelik"]
    assert names(stack, admin, q="celik") == ["Şule Çelik"]
    assert names(stack, admin, q="ярос") == ["Ярослав Ким"]
    joined = listed(stack, admin, q="sule")["items"][0]["id"]
    set_status(joined, MemberStatus.ACTIVE)  # the account sees her own name from now on
    renamed = f"name,email\nŞule Öztürk,sule.{tag}@example.com\n".encode()
    assert run_import(stack, admin, renamed, on_existing="update")["summary"]["updated"] == 1
    assert names(stack, admin, q="ozturk") == ["Şule Öztürk"]
    assert names(stack, admin, q="celik") == []


def test_the_fold():
    assert fold("  José   ÁLVAREZ ") == "jose alvarez"
    assert fold("İstanbul") == fold("ISTANBUL") == fold("ıstanbul") == "istanbul"
    assert fold("Straße") == "strasse"
    assert fold("Ёж") == "еж"
    assert fold("ÖZGÜR") == "ozgur"
