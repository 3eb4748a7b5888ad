"""A free user's story (R9) over real servers: PostgreSQL, Redis, a Celery worker and the SMTP
sink. Added to a lead, it hears of it by email in its own language and in its inbox; it reads
the lead and its notes and writes a message, and sees nothing else; once taken off the lead,
or removed from the account, the same token finds nothing at its next request."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Stack
from tests.support.members import active_member, fresh_email
from tests.support.processes import wait_until


@pytest.fixture(scope="module")
def stack(make_stack: Any) -> Stack:
    return make_stack()  # the participant_added email goes through the worker and the sink


def test_a_free_user_added_to_a_lead_hears_of_it_works_on_it_and_loses_it_at_once(
        stack: Stack):
    admin = stack.create_account(seats=5)
    account = f"/v1/accounts/{admin.id}"
    email = fresh_email("collaborator")
    free_id, _, as_free = active_member(stack, admin, email=email, user_type="free",
                                        language="es", name="Carmen Ruiz")
    lead = stack.api.simulate_post(f"{account}/leads", headers=admin.headers,
                                   json={"name": "Hotel Miramar"}).json
    other = stack.api.simulate_post(f"{account}/leads", headers=admin.headers,
                                    json={"name": "Secret deal"}).json
    stack.api.simulate_post(f"{account}/leads/{lead['id']}/notes", headers=admin.headers,
                            json={"text": "Call back on Monday"})
    one_lead = f"{account}/leads/{lead['id']}"

    # Before: it takes part in nothing.
    assert stack.api.simulate_get(one_lead, headers=as_free).status_code == 404
    added = stack.api.simulate_post(f"{one_lead}/participants", headers=admin.headers,
                                    json={"user_id": free_id})
    assert added.status_code == 201, added.text
    assert added.json["user_id"] == free_id and added.json["email"] == email
    listed = stack.api.simulate_get(f"{one_lead}/participants", headers=admin.headers)
    assert [p["user_id"] for p in listed.json["items"]] == [free_id]

    # The email arrives in Spanish (the language it was invited in), and the inbox has it.
    [message] = wait_until(lambda: stack.sink.messages(to=email, q="Hotel Miramar"),
                           timeout=60, message="the participant_added email")
    assert "participante" in message["subject"].lower() or "participante" in message["text"]
    assert "Carmen Ruiz" in message["text"] and "http://app.example.com" in message["text"]
    inbox = stack.api.simulate_get("/v1/me/inbox", headers=as_free).json["items"]
    assert [entry["event"] for entry in inbox] == ["participant_added"]

    # It reads the lead and its notes, writes a message, and switches only between its leads.
    assert stack.api.simulate_get(one_lead, headers=as_free).json["name"] == "Hotel Miramar"
    notes = stack.api.simulate_get(f"{one_lead}/notes", headers=as_free)
    assert [note["text"] for note in notes.json["items"]] == ["Call back on Monday"]
    written = stack.api.simulate_post(f"{one_lead}/messages", headers=as_free,
                                      json={"text": "I can host the group in May"})
    assert written.status_code == 201, written.text
    assert written.json["author_name"] == "Carmen Ruiz"
    mine = stack.api.simulate_get(f"{account}/leads", headers=as_free).json["items"]
    assert [item["id"] for item in mine] == [lead["id"]]
    # Nothing else: another lead, notes, edits, tasks, contacts, users, participants.
    assert stack.api.simulate_get(f"{account}/leads/{other['id']}",
                                  headers=as_free).status_code == 404
    assert stack.api.simulate_post(f"{account}/leads/{other['id']}/messages", headers=as_free,
                                   json={"text": "Hi"}).status_code == 404
    for refused in (
        stack.api.simulate_patch(one_lead, headers=as_free, json={"name": "Mine"}),
        stack.api.simulate_post(f"{one_lead}/notes", headers=as_free, json={"text": "x"}),
        stack.api.simulate_get(f"{account}/tasks", headers=as_free),
        stack.api.simulate_get(f"{account}/contacts", headers=as_free),
        stack.api.simulate_get(f"{account}/users", headers=as_free),
        stack.api.simulate_post(f"{one_lead}/participants", headers=as_free,
                                json={"user_id": free_id}),
    ):
        assert refused.status_code == 403 and refused.json["code"] == "free_user", refused.text

    # Taken off the lead: the same token finds it no more, at once.
    gone = stack.api.simulate_delete(f"{one_lead}/participants/{free_id}", headers=admin.headers)
    assert gone.status_code == 204, gone.text
    for answer in (stack.api.simulate_get(one_lead, headers=as_free),
                   stack.api.simulate_get(f"{one_lead}/notes", headers=as_free),
                   stack.api.simulate_post(f"{one_lead}/messages", headers=as_free,
                                           json={"text": "Still there?"})):
        assert answer.status_code == 404, answer.text
    assert stack.api.simulate_get(f"{account}/leads", headers=as_free).json["items"] == []

    # Added again, then removed from the account: its token stops working there at once.
    assert stack.api.simulate_post(f"{one_lead}/participants", headers=admin.headers,
                                   json={"user_id": free_id}).status_code == 201
    assert stack.api.simulate_get(one_lead, headers=as_free).status_code == 200
    removed = stack.api.simulate_delete(f"{account}/users/{free_id}", headers=admin.headers)
    assert removed.status_code == 200, removed.text
    assert stack.api.simulate_get(one_lead, headers=as_free).status_code in (401, 404)
    assert stack.api.simulate_get(f"{one_lead}/participants",
                                  headers=admin.headers).json["items"] == []


def test_only_free_members_of_the_account_take_part(stack: Stack):
    admin, other = stack.create_account(seats=5), stack.create_account(seats=5)
    account = f"/v1/accounts/{admin.id}"
    lead = stack.api.simulate_post(f"{account}/leads", headers=admin.headers,
                                   json={"name": "Dock 9"}).json
    participants = f"{account}/leads/{lead['id']}/participants"
    full_member, _, _ = active_member(stack, admin)
    stranger = stack.invite(other, email=fresh_email(), user_type="free").json["id"]
    codes = {}
    for candidate in (full_member, stranger, "7", None):
        answer = stack.api.simulate_post(participants, headers=admin.headers,
                                         json={"user_id": candidate})
        assert answer.status_code == 422, answer.text
        assert answer.json["errors"][0]["field"] == "user_id"
        codes[str(candidate)] = answer.json["errors"][0]["code"]
    assert codes == {str(full_member): "not_free", str(stranger): "unknown_member",
                     "7": "invalid_type", "None": "required"}
    free = stack.invite(admin, email=fresh_email(), user_type="free").json["id"]
    assert stack.api.simulate_post(participants, headers=admin.headers,
                                   json={"user_id": free}).status_code == 201
    again = stack.api.simulate_post(participants, headers=admin.headers, json={"user_id": free})
    assert again.status_code == 409 and again.json["code"] == "already_participant"
    # Another account's lead is not found.
    assert stack.api.simulate_post(f"/v1/accounts/{other.id}/leads/{lead['id']}/participants",
                                   headers=other.headers,
                                   json={"user_id": stranger}).status_code == 404


def test_one_person_may_be_free_in_several_accounts_beside_one_paid_membership(stack: Stack):
    home, second, third = (stack.create_account(seats=5) for _ in range(3))
    # home's admin holds a paid seat at home (R2): elsewhere only as a free user
    for account in (second, third):
        joined = stack.invite(account, email=home.email.upper(), user_type="free")
        assert joined.status_code == 201, joined.text
        assert joined.json["group"] == "Free users" and joined.json["user_type"] == "free"
    taken = stack.invite(stack.create_account(), email=home.email)
    assert taken.status_code == 409 and taken.json["code"] == "email_taken"
    assert "another account" in taken.json["detail"]
