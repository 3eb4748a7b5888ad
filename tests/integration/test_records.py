"""Records members own (R6, SPEC §10) over the real API and PostgreSQL: leads, contacts,
customers and tasks with a responsible member, notes and messages that keep their author,
every call checked against the caller's role and kept to its account; and the seed command."""

from __future__ import annotations

import json
import os
import subprocess
from typing import Any

import pytest
from sqlalchemy import func, select, update

from provisioning.core.db import session_scope
from provisioning.crm.models import Contact, Conversation, Customer, Lead, Message, Note, Task
from provisioning.members.models import Identity, MemberStatus
from tests.conftest import AdminAccount, Stack
from tests.support.members import active_member, fresh_email, set_status
from tests.support.openapi import conforms
from tests.support.processes import VENV_BIN

KINDS = {"leads": "name", "contacts": "name", "customers": "name", "tasks": "title"}
MODELS = {"leads": Lead, "contacts": Contact, "customers": Customer, "tasks": Task}


@pytest.fixture(scope="module")
def stack(make_stack: Any) -> Stack:
    return make_stack(worker=False)  # nothing here sends an email


def refused(result: Any, status: int, field: str | None = None) -> dict[str, Any]:
    assert result.status_code == status, result.text
    assert result.headers["content-type"].startswith("application/problem+json")
    assert "Traceback" not in result.text
    problem: dict[str, Any] = result.json
    if field is not None:
        assert field in [error["field"] for error in problem["errors"]], problem
    return problem


def own_member_id(stack: Stack, admin: AdminAccount) -> int:
    listed = stack.api.simulate_get(f"/v1/accounts/{admin.id}/users",
                                    params={"q": admin.email}, headers=admin.headers)
    return int(listed.json["items"][0]["id"])


def create(stack: Stack, headers: dict[str, str], account_id: int, kind: str, **body: Any
           ) -> Any:
    return stack.api.simulate_post(f"/v1/accounts/{account_id}/{kind}", json=body,
                                   headers=headers)


def every_page(stack: Stack, headers: dict[str, str], url: str, **params: Any
               ) -> list[list[dict[str, Any]]]:
    pages, cursor = [], None
    while True:
        page = stack.api.simulate_get(url, headers=headers,
                                      params={**params, **({"cursor": cursor} if cursor else {})})
        assert page.status_code == 200, page.text
        pages.append(page.json["items"])
        cursor = page.json["next_cursor"]
        if cursor is None:
            return pages


@pytest.mark.parametrize("kind", list(KINDS))
def test_a_record_is_created_read_changed_listed_by_its_responsible_and_deleted(
        stack: Stack, kind: str):
    admin = stack.create_account(seats=10)
    mine = own_member_id(stack, admin)
    seller, _, _ = active_member(stack, admin)
    label = KINDS[kind]
    url = f"/v1/accounts/{admin.id}/{kind}"

    made = create(stack, admin.headers, admin.id, kind, **{label: "  Acme renewal  "})
    assert made.status_code == 201, made.text
    record = made.json
    assert record[label] == "Acme renewal"  # trimmed
    assert record["responsible_id"] == mine  # the caller's own membership by default
    assert {"id", "created_at", "updated_at"} <= set(record)
    assert made.headers["location"] == f"{url}/{record['id']}"
    theirs = [create(stack, admin.headers, admin.id, kind, **{label: f"{kind} {i}"},
                     responsible_id=seller).json for i in range(5)]
    assert {item["responsible_id"] for item in theirs} == {seller}

    assert stack.api.simulate_get(f"{url}/{record['id']}", headers=admin.headers).json == record
    changed = stack.api.simulate_patch(f"{url}/{record['id']}", headers=admin.headers,
                                       json={label: "Acme, signed", "responsible_id": seller})
    assert changed.status_code == 200, changed.text
    assert changed.json[label] == "Acme, signed" and changed.json["responsible_id"] == seller
    assert changed.json["updated_at"] >= record["updated_at"]
    assert changed.json["created_at"] == record["created_at"]

    pages = every_page(stack, admin.headers, url, responsible_id=seller, limit=2)
    assert [len(page) for page in pages] == [2, 2, 2]
    listed = [item["id"] for page in pages for item in page]
    assert listed == sorted([record["id"]] + [item["id"] for item in theirs])
    assert every_page(stack, admin.headers, url, responsible_id=mine) == [[]]
    assert len(every_page(stack, admin.headers, url)[0]) == 6

    deleted = stack.api.simulate_delete(f"{url}/{record['id']}", headers=admin.headers)
    assert deleted.status_code == 204, deleted.text
    refused(stack.api.simulate_get(f"{url}/{record['id']}", headers=admin.headers), 404)
    refused(stack.api.simulate_delete(f"{url}/{record['id']}", headers=admin.headers), 404)

    audit = stack.api.simulate_get(f"/v1/accounts/{admin.id}/audit", headers=admin.headers)
    noun = kind[:-1]
    actions = [(entry["action"], entry["target_id"]) for entry in audit.json["items"]
               if entry["target_type"] == noun]
    assert actions[:2] == [(f"{noun}.delete", str(record["id"])),
                           (f"{noun}.update", str(record["id"]))]
    assert len([action for action, _ in actions if action == f"{noun}.create"]) == 6


def test_a_task_has_a_due_time_it_may_change_or_clear(stack: Stack):
    admin = stack.create_account()
    url = f"/v1/accounts/{admin.id}/tasks"
    made = create(stack, admin.headers, admin.id, "tasks", title="Call Ana",
                  due_at="2031-03-01T09:00:00+02:00")
    assert made.status_code == 201, made.text
    assert made.json["due_at"].startswith("2031-03-01T07:00:00")
    assert made.json["completed_at"] is None
    done = stack.api.simulate_patch(f"{url}/{made.json['id']}", headers=admin.headers,
                                    json={"completed_at": "2031-02-27T10:00:00Z",
                                          "due_at": None})
    assert done.status_code == 200, done.text
    assert done.json["due_at"] is None and done.json["completed_at"].startswith("2031-02-27")
    refused(stack.api.simulate_patch(f"{url}/{made.json['id']}", headers=admin.headers,
                                     json={"due_at": "next tuesday"}), 422, "due_at")


def test_notes_and_messages_keep_their_author_whoever_the_lead_moves_to(stack: Stack):
    admin = stack.create_account(seats=10)
    writer, writer_email, as_writer = active_member(stack, admin)
    other, _, _ = active_member(stack, admin)
    with session_scope() as session:
        session.execute(update(Identity).where(Identity.email == writer_email)
                        .values(name="Wanda Writer"))
    lead = create(stack, as_writer, admin.id, "leads", name="Blue Harbor").json
    assert lead["responsible_id"] == writer
    base = f"/v1/accounts/{admin.id}/leads/{lead['id']}"
    for path in ("notes", "messages"):
        for text in ("First contact, wants a demo.", "Sent the proposal."):
            written = stack.api.simulate_post(f"{base}/{path}", json={"text": text},
                                              headers=as_writer)
            assert written.status_code == 201, written.text
            assert written.json["author_name"] == "Wanda Writer"

    # The lead moves to another member and the writer renames themself: the entries stay theirs.
    moved = stack.api.simulate_patch(base, json={"responsible_id": other}, headers=admin.headers)
    assert moved.json["responsible_id"] == other
    with session_scope() as session:
        writer_identity = session.scalars(select(Identity.id)
                                          .where(Identity.email == writer_email)).one()
        session.execute(update(Identity).where(Identity.id == writer_identity)
                        .values(name="Wanda Renamed"))
    for path in ("notes", "messages"):
        pages = every_page(stack, admin.headers, f"{base}/{path}", limit=1)
        entries = [entry for page in pages for entry in page]
        assert [entry["text"] for entry in entries] == ["First contact, wants a demo.",
                                                        "Sent the proposal."]
        assert {(entry["author_id"], entry["author_name"], entry["lead_id"])
                for entry in entries} == {(writer_identity, "Wanda Writer", lead["id"])}
        assert all(entry["created_at"] for entry in entries)

    refused(stack.api.simulate_post(f"{base}/notes", json={"text": "  "}, headers=as_writer),
            422, "text")
    refused(stack.api.simulate_post(f"{base}/notes", json={"text": "x" * 10_001},
                                    headers=as_writer), 422, "text")
    refused(stack.api.simulate_get(f"/v1/accounts/{admin.id}/leads/999999999/notes",
                                   headers=admin.headers), 404)
    # Deleting the lead takes its notes and messages along.
    assert stack.api.simulate_delete(base, headers=admin.headers).status_code == 204
    with session_scope() as session:
        for model in (Note, Message):
            left = session.scalar(select(func.count()).select_from(model)
                                  .where(model.lead_id == lead["id"]))
            assert left == 0


@pytest.mark.parametrize("kind", ["leads", "customers"])
def test_participants_are_listed_first_added_first_a_page_at_a_time(stack: Stack, kind: str):
    admin = stack.create_account(seats=5)
    record = create(stack, admin.headers, admin.id, kind, name="Crowded").json
    participants = f"/v1/accounts/{admin.id}/{kind}/{record['id']}/participants"
    free = [stack.invite(admin, email=fresh_email("free"), user_type="free").json["id"]
            for _ in range(5)]
    added = list(reversed(free))  # the order they are added in, not their member ids'
    for member_id in added:
        answer = stack.api.simulate_post(participants, headers=admin.headers,
                                         json={"user_id": member_id})
        assert answer.status_code == 201, answer.text

    whole = stack.api.simulate_get(participants, headers=admin.headers)
    assert whole.status_code == 200, whole.text
    assert whole.json["next_cursor"] is None
    assert [item["user_id"] for item in whole.json["items"]] == added
    assert all(set(item) == {"user_id", "email", "name", "added_at"}
               for item in whole.json["items"])
    pages = every_page(stack, admin.headers, participants, limit=2)
    assert [[item["user_id"] for item in page] for page in pages] == [
        added[:2], added[2:4], added[4:]]
    assert [item for page in pages for item in page] == whole.json["items"]
    exact = stack.api.simulate_get(participants, headers=admin.headers, params={"limit": 5})
    assert exact.json["items"] == whole.json["items"] and exact.json["next_cursor"] is None

    # A participant taken off between two pages moves nothing: the next page starts after
    # the last one seen.
    first = stack.api.simulate_get(participants, headers=admin.headers, params={"limit": 2})
    assert stack.api.simulate_delete(f"{participants}/{added[0]}",
                                     headers=admin.headers).status_code == 204
    rest = stack.api.simulate_get(participants, headers=admin.headers, params={
        "limit": 10, "cursor": first.json["next_cursor"]})
    assert [item["user_id"] for item in rest.json["items"]] == added[2:]

    for params, field in (({"limit": "0"}, "limit"), ({"limit": "1001"}, "limit"),
                          ({"limit": "two"}, "limit"), ({"cursor": "bogus!"}, "cursor")):
        refused(stack.api.simulate_get(participants, headers=admin.headers, params=params),
                422, field)


def test_each_call_needs_its_permission_and_another_account_s_records_are_not_found(
        stack: Stack):
    admin, other = stack.create_account(seats=10), stack.create_account(seats=10)
    roles = f"/v1/accounts/{admin.id}/roles"
    for name, permissions in (("Tasks only", ["tasks.view", "tasks.edit"]),
                              ("Lead viewer", ["leads.view"])):
        made = stack.api.simulate_post(roles, json={"name": name, "permissions": permissions},
                                       headers=admin.headers)
        assert made.status_code == 201, made.text
    _, _, tasks_only = active_member(stack, admin, role="Tasks only")
    _, _, viewer = active_member(stack, admin, role="Lead viewer")
    _, _, seller = active_member(stack, admin, role="member")
    account = f"/v1/accounts/{admin.id}"
    lead = create(stack, admin.headers, admin.id, "leads", name="Kite Travel").json
    customer = create(stack, admin.headers, admin.id, "customers", name="Kite Travel Ltd").json
    one_lead = f"{account}/leads/{lead['id']}"

    problem = refused(stack.api.simulate_get(f"{account}/leads", headers=tasks_only), 403)
    assert problem["code"] == "permission_required" and "leads.view" in problem["detail"]
    for answer in (stack.api.simulate_get(one_lead, headers=tasks_only),
                   stack.api.simulate_get(f"{one_lead}/notes", headers=tasks_only),
                   create(stack, viewer, admin.id, "leads", name="Nope"),
                   stack.api.simulate_patch(one_lead, json={"name": "Nope"}, headers=viewer),
                   stack.api.simulate_post(f"{one_lead}/notes", json={"text": "Hi"},
                                           headers=viewer),
                   stack.api.simulate_post(f"{one_lead}/messages", json={"text": "Hi"},
                                           headers=viewer),
                   # the member role edits leads but does not delete them, nor see customers
                   stack.api.simulate_delete(one_lead, headers=seller),
                   stack.api.simulate_get(f"{account}/customers/{customer['id']}",
                                          headers=seller),
                   stack.api.simulate_get(f"{account}/tasks", headers=viewer)):
        assert refused(answer, 403)["code"] == "permission_required"
    assert stack.api.simulate_get(one_lead, headers=viewer).status_code == 200
    assert stack.api.simulate_get(f"{account}/tasks", headers=tasks_only).status_code == 200
    assert stack.api.simulate_patch(one_lead, json={"name": "Kite"},
                                    headers=seller).status_code == 200

    # A free user takes part in no lead yet: it lists none, finds none, and may not create
    # one, whatever its role holds (R9: only leads they take part in).
    _, _, free = active_member(stack, admin, role="member", user_type="free")
    listed = stack.api.simulate_get(f"{account}/leads", headers=free)
    assert listed.status_code == 200 and listed.json["items"] == []
    refused(stack.api.simulate_get(one_lead, headers=free), 404)
    assert refused(create(stack, free, admin.id, "leads", name="Mine"),
                   403)["code"] == "free_user"

    # Another account: its admin finds no such account, and its own URL no such record.
    _, _, their_admin = active_member(stack, other, role="admin")
    for headers in (their_admin, other.headers):
        refused(stack.api.simulate_get(f"{account}/leads", headers=headers), 404)
        refused(stack.api.simulate_get(one_lead, headers=headers), 404)
        refused(create(stack, headers, admin.id, "leads", name="Takeover"), 404)
    theirs = f"/v1/accounts/{other.id}/leads/{lead['id']}"
    for answer in (stack.api.simulate_get(theirs, headers=other.headers),
                   stack.api.simulate_patch(theirs, json={"name": "Mine now"},
                                            headers=other.headers),
                   stack.api.simulate_delete(theirs, headers=other.headers),
                   stack.api.simulate_post(f"{theirs}/notes", json={"text": "Hi"},
                                           headers=other.headers)):
        assert refused(answer, 404)["detail"] == "No such lead in this account."
    assert stack.api.simulate_get(one_lead, headers=admin.headers).json["name"] == "Kite"


def test_a_responsible_must_be_an_owning_member_of_the_account(stack: Stack):
    admin, other = stack.create_account(seats=10), stack.create_account(seats=10)
    stranger, _, _ = active_member(stack, other)
    free = stack.invite(admin, email=fresh_email("free"), user_type="free").json["id"]
    invited = stack.invite(admin, email=fresh_email("invited")).json["id"]
    disabled, _, _ = active_member(stack, admin)
    set_status(disabled, MemberStatus.INACTIVE)
    account = f"/v1/accounts/{admin.id}"
    lead = create(stack, admin.headers, admin.id, "leads", name="Orchid Hotels").json

    codes = {}
    for bad in (stranger, free, disabled, 999_999_999, "12", "twelve", True, 0, -3, 1.5):
        for kind in KINDS:
            problem = refused(create(stack, admin.headers, admin.id, kind,
                                     **{KINDS[kind]: "X"}, responsible_id=bad),
                              422, "responsible_id")
            codes[bad] = problem["errors"][0]["code"]
        refused(stack.api.simulate_patch(f"{account}/leads/{lead['id']}", headers=admin.headers,
                                         json={"responsible_id": bad}), 422, "responsible_id")
    assert codes[stranger] == codes[999_999_999] == "no_such_member"
    assert codes[free] == "free_member" and codes[disabled] == "inactive_member"
    refused(stack.api.simulate_patch(f"{account}/leads/{lead['id']}", headers=admin.headers,
                                     json={"responsible_id": None}), 422, "responsible_id")
    refused(stack.api.simulate_get(f"{account}/leads", params={"responsible_id": "x"},
                                   headers=admin.headers), 422, "responsible_id")
    # An invited member may already own records.
    assert create(stack, admin.headers, admin.id, "leads", name="Y",
                  responsible_id=invited).status_code == 201
    # Names: required, trimmed, at most 255 characters; every problem named at once.
    several = refused(create(stack, admin.headers, admin.id, "leads", name=" ",
                             responsible_id="x"), 422)
    assert {error["field"] for error in several["errors"]} == {"name", "responsible_id"}
    refused(create(stack, admin.headers, admin.id, "tasks", title="t" * 256), 422, "title")
    refused(create(stack, admin.headers, admin.id, "contacts"), 422, "name")
    refused(stack.api.simulate_post(f"{account}/customers", json=["x"], headers=admin.headers),
            422, "body")
    refused(stack.api.simulate_get(f"{account}/tasks", params={"limit": "1001"},
                                   headers=admin.headers), 422, "limit")
    refused(stack.api.simulate_get(f"{account}/tasks", params={"cursor": "bogus!"},
                                   headers=admin.headers), 422, "cursor")
    with session_scope() as session:  # nothing half-written
        assert session.scalar(select(func.count()).select_from(Lead)
                              .where(Lead.account_id == admin.id)) == 2


def test_record_answers_carry_the_fields_the_document_names(stack: Stack):
    described = stack.api.simulate_get("/openapi.json").json
    admin = stack.create_account()
    account = "/v1/accounts/{account_id}"
    answers = []
    for kind, label in KINDS.items():
        made = create(stack, admin.headers, admin.id, kind, **{label: "Doc"})
        one = f"/v1/accounts/{admin.id}/{kind}/{made.json['id']}"
        answers += [
            ("post", f"{account}/{kind}", made),
            ("get", f"{account}/{kind}", stack.api.simulate_get(
                f"/v1/accounts/{admin.id}/{kind}", headers=admin.headers)),
            ("get", f"{account}/{kind}/{{record_id}}", stack.api.simulate_get(
                one, headers=admin.headers)),
            ("patch", f"{account}/{kind}/{{record_id}}", stack.api.simulate_patch(
                one, json={label: "Doc 2"}, headers=admin.headers)),
        ]
        if kind == "leads":
            for path in ("notes", "messages"):
                answers += [
                    ("post", f"{account}/leads/{{record_id}}/{path}", stack.api.simulate_post(
                        f"{one}/{path}", json={"text": "Hello"}, headers=admin.headers)),
                    ("get", f"{account}/leads/{{record_id}}/{path}", stack.api.simulate_get(
                        f"{one}/{path}", headers=admin.headers)),
                ]
    strays: list[str] = []
    for method, path, result in answers:
        responses = described["paths"][path][method]["responses"]
        assert str(result.status_code) in responses, (method, path, result.text)
        schema = responses[str(result.status_code)]["content"]["application/json"]["schema"]
        strays += conforms(described, schema, result.json, f"{method} {path}")
    assert strays == []


def seed(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **stack.env}
    return subprocess.run([str(VENV_BIN / "provision"), "seed-records", *args,
                           "--database-url", stack.env["PROVISIONING_DATABASE_URL"]],
                          env=env, capture_output=True, text=True, timeout=300)


def owned(member_id: int) -> dict[str, int]:
    with session_scope() as session:
        counts = {kind: session.scalar(select(func.count()).select_from(model)
                                       .where(model.responsible_id == member_id)) or 0
                  for kind, model in MODELS.items()}
        for name, model in (("conversations", Conversation), ("notes", Note),
                            ("messages", Message)):
            counts[name] = session.scalar(
                select(func.count()).select_from(model).join(Lead, Lead.id == model.lead_id)
                .where(Lead.responsible_id == member_id)) or 0
    return counts


def test_the_seed_command_writes_exactly_the_records_asked_for(stack: Stack):
    admin = stack.create_account(seats=10)
    member, _, as_member = active_member(stack, admin)
    neighbour, _, _ = active_member(stack, admin)

    ran = seed(stack, "--account", str(admin.id), "--member", str(member), "--count", "1234")
    assert ran.returncode == 0, ran.stderr
    printed = json.loads(ran.stdout.strip().splitlines()[-1])
    expected = {"leads": 1234, "contacts": 1234, "customers": 1234, "tasks": 1234,
                "conversations": 124, "notes": 124, "messages": 124}
    assert {name: printed[name] for name in expected} == expected
    assert printed["account_id"] == admin.id and printed["member_id"] == member
    assert printed["seconds"] >= 0
    assert owned(member) == expected

    ran = seed(stack, "--account", str(admin.id), "--member", str(neighbour), "--count", "7",
               "--kinds", "tasks,contacts")
    assert ran.returncode == 0, ran.stderr
    assert owned(neighbour) == {"leads": 0, "contacts": 7, "customers": 0, "tasks": 7,
                                "conversations": 0, "notes": 0, "messages": 0}
    assert owned(member) == expected  # the first member's records are untouched

    # The seeded records are ordinary records: listed, filtered and paged by the API.
    pages = every_page(stack, as_member, f"/v1/accounts/{admin.id}/tasks",
                       responsible_id=member, limit=1000)
    assert [len(page) for page in pages] == [1000, 234]
    assert all(task["title"] and task["due_at"] for task in pages[0])
    lead = stack.api.simulate_get(f"/v1/accounts/{admin.id}/leads",
                                  params={"responsible_id": member, "limit": 1},
                                  headers=as_member).json["items"][0]
    notes = stack.api.simulate_get(f"/v1/accounts/{admin.id}/leads/{lead['id']}/notes",
                                   headers=as_member).json["items"]
    assert len(notes) == 1 and notes[0]["author_name"]

    free = stack.invite(admin, email=fresh_email("free"), user_type="free").json["id"]
    for args, complaint in ((("--member", str(free), "--count", "5"), "member"),
                            (("--member", str(member), "--count", "5", "--kinds", "deals"),
                             "kinds"),
                            (("--member", str(member), "--count", "5", "--kinds", ","),
                             "kinds"),
                            (("--member", str(member), "--count", "-1"), "count")):
        ran = seed(stack, "--account", str(admin.id), *args)
        assert ran.returncode == 2, ran.stdout
        assert complaint in ran.stderr
    assert owned(free)["leads"] == 0


def test_a_task_given_to_someone_else_lands_in_their_inbox(stack: Stack):
    admin = stack.create_account()
    member_id, _, member = active_member(stack, admin)
    url = f"/v1/accounts/{admin.id}/tasks"

    def inbox(headers: dict[str, str]) -> list[tuple[str, str]]:
        items = stack.api.simulate_get("/v1/me/inbox", headers=headers).json["items"]
        return [(item["event"], item["text"]) for item in items]

    before = inbox(admin.headers)
    own = create(stack, member, admin.id, "tasks", title="Water the plants")
    assert own.status_code == 201 and inbox(member) == []  # one's own task tells nobody
    given = create(stack, admin.headers, admin.id, "tasks", title="Call Ana",
                   responsible_id=member_id)
    assert given.status_code == 201
    assert [event for event, _ in inbox(member)] == ["task_assigned"]
    assert "Call Ana" in inbox(member)[0][1]
    handed_back = stack.api.simulate_patch(f"{url}/{own.json['id']}", headers=member,
                                           json={"responsible_id": own_member_id(stack, admin)})
    assert handed_back.status_code == 200
    assert [event for event, _ in inbox(admin.headers)] == ["task_assigned"] + [
        event for event, _ in before]
    renamed = stack.api.simulate_patch(f"{url}/{given.json['id']}", headers=admin.headers,
                                       json={"title": "Call Ana back"})
    assert renamed.status_code == 200 and len(inbox(member)) == 1  # still theirs: no news
    lead = create(stack, admin.headers, admin.id, "leads", name="Acme", responsible_id=member_id)
    assert lead.status_code == 201 and len(inbox(member)) == 1  # only tasks tell
