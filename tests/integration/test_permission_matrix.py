"""The permission matrix (R1, R9), generated from the route table: every endpoint is called by
every kind of principal over the real API and PostgreSQL, and each answer is what the table
below expects. A route the table does not list fails the test, so a new route comes with its
row.

How to extend: add a ``(METHOD, path)`` key to ``EXPECTED`` (the path as /openapi.json spells
it) with one of the expectation sets, or ``allowed(...)`` naming who besides the admin and the
admin's API key may pass. Outcomes are a small vocabulary: ``ok`` (the policy let the call
through: any answer but 401, 403 and 404), ``denied`` (403), ``hidden`` (404: another account,
or a record a free user does not take part in), ``unauth`` (401).
"""

from __future__ import annotations

import io
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from PIL import Image
from sqlalchemy import select

from api.openapi import openapi_path
from api.routes import routes
from provisioning.access.policy import MEMBER_PERMISSIONS
from provisioning.core.config import settings
from provisioning.core.db import session_scope
from provisioning.core.security import derived_token
from provisioning.mail.models import OutboxEmail
from tests.conftest import AdminAccount, Stack
from tests.integration.test_push_devices import VAPID_KEY
from tests.support.members import PASSWORD, active_member, fresh_email, token_of
from tests.support.openapi import conforms

OK, DENIED, HIDDEN, UNAUTH = "ok", "denied", "hidden", "unauth"
# Who calls: nobody; a free user taking part in one lead and one customer; the built-in member
# role; a custom role with users.manage (and the member role's permissions); a custom role with
# leads.view and contacts.view; an admin of another account; the admin's API key; the admin.
PRINCIPALS = ("anonymous", "free", "member", "manager", "viewer", "outsider", "api_key",
              "admin")
MEMBERS = ("free", "member", "manager", "viewer")


def outcome(status: int) -> str:
    return {401: UNAUTH, 403: DENIED, 404: HIDDEN}.get(status, OK)


def allowed(*who: str) -> dict[str, str]:
    """An account route: the admin, its API key and ``who`` pass; other members of the account
    are refused; another account's admin finds nothing; nobody signed in is asked to."""
    return {"anonymous": UNAUTH, "outsider": HIDDEN, "api_key": OK, "admin": OK,
            **{member: OK if member in who else DENIED for member in MEMBERS}}


PUBLIC = dict.fromkeys(PRINCIPALS, OK)
SIGNED_IN = {**dict.fromkeys(PRINCIPALS, OK), "anonymous": UNAUTH}
ADMINS = allowed("manager")  # users.manage (R1)
NOBODY_ELSE = allowed()

# The permissions each member principal holds (the free user: none account-wide, R9).
LEADS_VIEWERS = allowed("member", "manager", "viewer")
LEADS_EDITORS = allowed("member", "manager")
CONTACTS_VIEWERS, CONTACTS_EDITORS = LEADS_VIEWERS, LEADS_EDITORS
TASKS = allowed("member", "manager")
# R9 point by point: a free user lists and switches between its leads and customers, views
# their fields and notes, writes messages; it cannot edit fields, write notes, see or set tasks,
# see contacts, add free users (participants), or open anything else of the account.
PARTICIPANT_LEADS = {**LEADS_VIEWERS, "free": OK}
PARTICIPANT_CUSTOMERS = allowed("free")
MESSAGE_WRITERS = {**LEADS_EDITORS, "free": OK}

A = "/v1/accounts/{account_id}"
EXPECTED: dict[tuple[str, str], dict[str, str]] = {
    ("GET", "/healthz"): PUBLIC,
    ("GET", "/readyz"): PUBLIC,
    ("GET", "/openapi.json"): PUBLIC,
    ("POST", "/v1/auth/login"): PUBLIC,
    ("POST", "/v1/auth/logout"): SIGNED_IN,
    ("GET", "/v1/me"): SIGNED_IN,
    ("PATCH", "/v1/me"): SIGNED_IN,
    ("PUT", "/v1/me/photo"): SIGNED_IN,
    ("DELETE", "/v1/me/photo"): SIGNED_IN,
    # The admin's photo: its person and whoever shares an account with them.
    ("GET", "/v1/identities/{identity_id}/photo"): {**SIGNED_IN, "outsider": HIDDEN},
    ("POST", "/v1/me/password"): SIGNED_IN,
    ("POST", "/v1/me/email"): SIGNED_IN,
    ("POST", "/v1/me/email/confirm"): SIGNED_IN,
    ("POST", "/v1/me/2fa/setup"): SIGNED_IN,
    ("POST", "/v1/me/2fa/enable"): SIGNED_IN,
    ("POST", "/v1/me/2fa/disable"): SIGNED_IN,
    ("GET", "/v1/me/notifications"): SIGNED_IN,
    ("PUT", "/v1/me/notifications"): SIGNED_IN,
    ("GET", "/v1/me/inbox"): SIGNED_IN,
    ("GET", "/v1/me/devices"): SIGNED_IN,
    ("POST", "/v1/me/devices"): SIGNED_IN,
    # The other account's admin's phone: nobody else's to remove.
    ("DELETE", "/v1/me/devices/{device_id}"): {
        **dict.fromkeys(PRINCIPALS, HIDDEN), "anonymous": UNAUTH, "outsider": OK},
    ("GET", "/v1/push/web-push-key"): SIGNED_IN,
    ("POST", "/v1/me/inbox/read"): SIGNED_IN,
    # The free user's own participant_added entry: nobody else's to mark.
    ("POST", "/v1/me/inbox/{notification_id}/read"): {
        **dict.fromkeys(PRINCIPALS, HIDDEN), "anonymous": UNAUTH, "free": OK},
    ("GET", f"{A}/api-keys"): ADMINS,
    ("POST", f"{A}/api-keys"): ADMINS,
    ("DELETE", f"{A}/api-keys/{{key_id}}"): ADMINS,
    ("GET", f"{A}/users"): ADMINS,
    ("POST", f"{A}/users"): ADMINS,
    ("POST", f"{A}/users/bulk"): ADMINS,
    ("GET", f"{A}/users/{{member_id}}"): ADMINS,
    ("PATCH", f"{A}/users/{{member_id}}"): ADMINS,
    ("DELETE", f"{A}/users/{{member_id}}"): ADMINS,
    ("POST", f"{A}/users/{{member_id}}/disable"): ADMINS,
    ("POST", f"{A}/users/{{member_id}}/activate"): ADMINS,
    ("GET", f"{A}/users/{{member_id}}/records"): ADMINS,
    ("DELETE", f"{A}/users/{{member_id}}/invitation"): ADMINS,
    ("POST", f"{A}/users/{{member_id}}/invitation/resend"): ADMINS,
    ("GET", f"{A}/roles"): ADMINS,
    ("POST", f"{A}/roles"): ADMINS,
    ("PATCH", f"{A}/roles/{{role_id}}"): ADMINS,
    ("DELETE", f"{A}/roles/{{role_id}}"): ADMINS,
    ("GET", f"{A}/permissions"): ADMINS,
    ("GET", f"{A}/groups"): ADMINS,
    ("POST", f"{A}/groups"): ADMINS,
    ("PATCH", f"{A}/groups/{{group_id}}"): ADMINS,
    ("DELETE", f"{A}/groups/{{group_id}}"): ADMINS,
    ("GET", f"{A}/audit"): ADMINS,
    # billing.view reads (users.manage implies it), users.manage changes (R1)
    ("GET", f"{A}/billing"): ADMINS,
    ("PATCH", f"{A}/billing"): ADMINS,
    ("GET", f"{A}/billing/events"): ADMINS,
    ("GET", f"{A}/billing/seats"): ADMINS,
    ("GET", f"{A}/billing/preview"): ADMINS,
    ("POST", f"{A}/billing/recalculate"): ADMINS,
    ("GET", f"{A}/jobs"): ADMINS,
    ("GET", f"{A}/imports"): ADMINS,
    ("POST", f"{A}/imports"): ADMINS,
    ("GET", f"{A}/imports/{{job_id}}"): ADMINS,
    ("GET", f"{A}/imports/{{job_id}}/rows.csv"): ADMINS,
    ("POST", f"{A}/imports/{{job_id}}/commit"): ADMINS,
    # A job names no account in its URL: another account's is not found.
    ("GET", "/v1/jobs/{job_id}"): ADMINS,
    ("GET", "/v1/jobs/{job_id}/errors.csv"): ADMINS,
    ("GET", "/v1/jobs/{job_id}/results"): ADMINS,
    ("POST", "/v1/jobs/{job_id}/cancel"): ADMINS,
    ("GET", "/v1/invitations/{token}"): PUBLIC,
    ("POST", "/v1/invitations/{token}/accept"): PUBLIC,
    ("POST", "/v1/invitations/{token}/renew"): PUBLIC,
    ("GET", "/invitations/{token}"): PUBLIC,
    ("GET", "/email-change/{token}"): PUBLIC,
    ("GET", f"{A}/leads"): PARTICIPANT_LEADS,
    ("POST", f"{A}/leads"): LEADS_EDITORS,
    ("GET", f"{A}/leads/{{record_id}}"): PARTICIPANT_LEADS,
    ("PATCH", f"{A}/leads/{{record_id}}"): LEADS_EDITORS,
    ("DELETE", f"{A}/leads/{{record_id}}"): NOBODY_ELSE,  # leads.delete: the member role lacks it
    ("GET", f"{A}/leads/{{record_id}}/notes"): PARTICIPANT_LEADS,
    ("POST", f"{A}/leads/{{record_id}}/notes"): LEADS_EDITORS,
    ("GET", f"{A}/leads/{{record_id}}/messages"): PARTICIPANT_LEADS,
    ("POST", f"{A}/leads/{{record_id}}/messages"): MESSAGE_WRITERS,
    ("GET", f"{A}/leads/{{record_id}}/participants"): LEADS_VIEWERS,
    ("POST", f"{A}/leads/{{record_id}}/participants"): LEADS_EDITORS,
    ("DELETE", f"{A}/leads/{{record_id}}/participants/{{member_id}}"): LEADS_EDITORS,
    ("GET", f"{A}/contacts"): CONTACTS_VIEWERS,
    ("POST", f"{A}/contacts"): CONTACTS_EDITORS,
    ("GET", f"{A}/contacts/{{record_id}}"): CONTACTS_VIEWERS,
    ("PATCH", f"{A}/contacts/{{record_id}}"): CONTACTS_EDITORS,
    ("DELETE", f"{A}/contacts/{{record_id}}"): CONTACTS_EDITORS,
    # customers.view and customers.edit: neither the member role nor the custom roles hold them
    ("GET", f"{A}/customers"): PARTICIPANT_CUSTOMERS,
    ("POST", f"{A}/customers"): NOBODY_ELSE,
    ("GET", f"{A}/customers/{{record_id}}"): PARTICIPANT_CUSTOMERS,
    ("PATCH", f"{A}/customers/{{record_id}}"): NOBODY_ELSE,
    ("DELETE", f"{A}/customers/{{record_id}}"): NOBODY_ELSE,
    ("GET", f"{A}/customers/{{record_id}}/participants"): NOBODY_ELSE,
    ("POST", f"{A}/customers/{{record_id}}/participants"): NOBODY_ELSE,
    ("DELETE", f"{A}/customers/{{record_id}}/participants/{{member_id}}"): NOBODY_ELSE,
    ("GET", f"{A}/tasks"): TASKS,
    ("POST", f"{A}/tasks"): TASKS,
    ("GET", f"{A}/tasks/{{record_id}}"): TASKS,
    ("PATCH", f"{A}/tasks/{{record_id}}"): TASKS,
    ("DELETE", f"{A}/tasks/{{record_id}}"): TASKS,
}

# Bodies that reach the policy without changing much: most writes are sent empty and answered
# 422 when the policy lets them through (still "ok"); these need something else. A callable
# makes the body for each call. Every 2xx answer is checked against /openapi.json.
BODIES: dict[tuple[str, str], Any] = {
    ("PUT", "/v1/me/photo"): (b"not an image", "image/png"),
    ("POST", f"{A}/imports"): (b"", "text/csv"),
    ("POST", f"{A}/leads/{{record_id}}/messages"): {"text": "Hello from the matrix"},
    ("POST", f"{A}/groups"): lambda world: {"name": world.names()},
    ("PATCH", f"{A}/groups/{{group_id}}"): lambda world: {"name": world.names()},
    ("PATCH", f"{A}/roles/{{role_id}}"): lambda world: {"name": world.names()},
    ("POST", f"{A}/leads/{{record_id}}/participants"): lambda world: {
        "user_id": world.free_member()},
}


def _endpoints() -> list[tuple[str, str]]:
    """Every (method, path) of the route table: reads first, then writes (deleting the
    admin's photo, cancelling the job), logging out last since it ends a token."""
    found = {(method.upper(), openapi_path(entry.path))
             for entry in routes() for method in entry.operations}
    return sorted(found, key=lambda key: (key == ("POST", "/v1/auth/logout"),
                                          key[0] != "GET", key[1], key[0]))


@dataclass
class World:
    """Account A with its principals and records, and another account's admin."""

    stack: Stack
    admin: AdminAccount
    headers: dict[str, dict[str, str]]
    ids: dict[str, int] = field(default_factory=dict)
    token: str = ""
    email_change_token: str = ""
    described: dict[str, Any] = field(default_factory=dict)
    names: Callable[[], str] = field(default_factory=lambda: (
        f"matrix {n}" for n in itertools.count()).__next__)

    def post(self, path: str, body: Any) -> dict[str, Any]:
        made = self.stack.api.simulate_post(path.format(account_id=self.admin.id), json=body,
                                            headers=self.headers["admin"])
        assert made.status_code == 201, (path, made.text)
        return dict(made.json)

    def free_member(self) -> int:
        return int(self.post(A + "/users", {"email": fresh_email("free"),
                                            "user_type": "free"})["id"])

    def value(self, name: str, method: str, path: str) -> str:
        """A path parameter's value; what the call may delete or change is made fresh."""
        kind = path.split("/")[4] if path.startswith(A) and path.count("/") > 3 else ""
        fresh = method in ("DELETE", "PATCH", "POST")
        if name == "account_id":
            return str(self.admin.id)
        if name == "record_id":
            if method == "DELETE" and path.endswith("{record_id}"):
                label = "title" if kind == "tasks" else "name"
                return str(self.post(f"{A}/{kind}", {label: self.names()})["id"])
            return str(self.ids[kind])
        if name == "member_id" and "participants" in path:
            member_id = self.free_member()
            self.post(f"{A}/{kind}/{self.ids[kind]}/participants", {"user_id": member_id})
            return str(member_id)
        if name == "member_id":
            return str(self.post(A + "/users", {"email": fresh_email()})["id"] if fresh
                       else self.ids["member"])
        if name == "role_id":
            return str(self.post(A + "/roles", {"name": self.names(),
                                                "permissions": ["leads.view"]})["id"])
        if name == "group_id":
            return str(self.post(A + "/groups", {"name": self.names()})["id"])
        if name == "key_id":
            return str(self.post(A + "/api-keys", {"name": self.names()})["id"])
        if name == "token" and path.startswith("/email-change/"):
            return self.email_change_token
        if name == "token":
            return self.token
        return str(self.ids[name])


def _login(stack: Stack, email: str, password: str) -> dict[str, str]:
    login = stack.api.simulate_post("/v1/auth/login", json={"email": email,
                                                            "password": password})
    assert login.status_code == 200, login.text
    return {"Authorization": f"Bearer {login.json['token']}"}


@pytest.fixture(scope="module")
def world(make_stack: Any) -> World:
    # emails wait in the outbox; nothing here reads them
    stack = make_stack(worker=False, web_push_private_key=VAPID_KEY)
    admin, other = stack.create_account(seats=50), stack.create_account()
    headers = {"anonymous": {}, "api_key": admin.headers,
               "admin": _login(stack, admin.email, "correct horse battery"),
               "outsider": _login(stack, other.email, "correct horse battery")}
    world = World(stack, admin, headers, described=stack.api.simulate_get("/openapi.json").json)
    world.post(A + "/roles", {"name": "People ops",
                              "permissions": ["users.manage", *MEMBER_PERMISSIONS]})
    world.post(A + "/roles", {"name": "Viewer", "permissions": ["leads.view", "contacts.view"]})
    for principal, invite in (("member", {}), ("manager", {"role": "People ops"}),
                              ("viewer", {"role": "Viewer"}), ("free", {"user_type": "free"})):
        world.ids[principal], _, headers[principal] = active_member(stack, admin, **invite)
    for kind, label in (("leads", "name"), ("contacts", "name"), ("customers", "name"),
                        ("tasks", "title")):
        world.ids[kind] = world.post(f"{A}/{kind}", {label: f"Matrix {kind}"})["id"]
    for kind in ("leads", "customers"):
        world.post(f"{A}/{kind}/{world.ids[kind]}/participants",
                   {"user_id": world.ids["free"]})
    imported = stack.api.simulate_post(f"/v1/accounts/{admin.id}/imports?dry_run=true",
                                       body=f"email\n{fresh_email()}\n",
                                       headers={**headers["admin"],
                                                "Content-Type": "text/csv"})
    assert imported.status_code == 202, imported.text
    world.ids["job_id"] = imported.json["job"]["id"]
    world.token = token_of(world.post(A + "/users", {"email": fresh_email()})["id"])
    world.ids["identity_id"] = stack.api.simulate_get("/v1/me", headers=headers["admin"]
                                                      ).json["id"]
    png = io.BytesIO()
    Image.new("RGB", (64, 64), (30, 90, 200)).save(png, "PNG")
    photo = stack.api.simulate_put("/v1/me/photo", body=png.getvalue(),
                                   headers={**headers["admin"], "Content-Type": "image/png"})
    assert photo.status_code == 200, photo.text
    inbox = stack.api.simulate_get("/v1/me/inbox", headers=headers["free"])
    world.ids["notification_id"] = inbox.json["items"][0]["id"]
    phone = stack.api.simulate_post("/v1/me/devices", headers=headers["outsider"], json={
        "channel": "mobile", "platform": "android", "token": "matrix-token"})
    world.ids["device_id"] = phone.json["id"]
    world.email_change_token = _email_change_token(stack, headers["manager"])
    return world


def _email_change_token(stack: Stack, headers: dict[str, str]) -> str:
    """The token of the link a request to change one's login email sends."""
    new = fresh_email("moving")
    asked = stack.api.simulate_post("/v1/me/email", headers=headers,
                                    json={"email": new, "password": PASSWORD})
    assert asked.status_code == 202, asked.text
    with session_scope() as session:
        link = session.scalars(select(OutboxEmail.context).where(
            OutboxEmail.recipient == new)).one()["derived_links"]["link"]
    return derived_token(settings().secret_key, link["purpose"], link["nonce"])


# R9 point by point: what a free user may do in its account; everything else is refused.
R9_ALLOWED = {
    "switch between its leads and customers": [("GET", f"{A}/leads"), ("GET", f"{A}/customers")],
    "view fields": [("GET", f"{A}/leads/{{record_id}}"), ("GET", f"{A}/customers/{{record_id}}")],
    "view notes": [("GET", f"{A}/leads/{{record_id}}/notes")],
    "write in the chat and to the lead's contact": [
        ("GET", f"{A}/leads/{{record_id}}/messages"),
        ("POST", f"{A}/leads/{{record_id}}/messages")],
}
R9_REFUSED = {  # a few named outright, so a loosened row reads as the rule it breaks
    "edit fields": [("PATCH", f"{A}/leads/{{record_id}}"),
                    ("PATCH", f"{A}/customers/{{record_id}}")],
    "see or set tasks": [("GET", f"{A}/tasks"), ("POST", f"{A}/tasks")],
    "write notes": [("POST", f"{A}/leads/{{record_id}}/notes")],
    "add free users": [("POST", f"{A}/users"), ("POST", f"{A}/leads/{{record_id}}/participants")],
    "see fields of attached contacts": [("GET", f"{A}/contacts"),
                                        ("GET", f"{A}/contacts/{{record_id}}")],
}


def test_the_free_user_s_column_is_r9_point_by_point():
    allowed = {key for keys in R9_ALLOWED.values() for key in keys}
    for point, keys in R9_REFUSED.items():
        assert all(EXPECTED[key]["free"] == DENIED for key in keys), point
    account_routes = {key for key in EXPECTED if key[1].startswith(A)}
    assert {key for key in account_routes if EXPECTED[key]["free"] == OK} == allowed
    # Any other page of the account: refused (never hidden, never let through).
    assert {EXPECTED[key]["free"] for key in account_routes - allowed} == {DENIED}


def test_every_route_of_the_table_has_a_row_and_every_row_a_route():
    served = set(_endpoints())
    assert sorted(served - set(EXPECTED)) == [], "routes without a matrix row"
    assert sorted(set(EXPECTED) - served) == [], "matrix rows without a route"
    assert all(set(row) == set(PRINCIPALS) for row in EXPECTED.values())


@pytest.mark.parametrize(("method", "path"), _endpoints(),
                         ids=[f"{method} {path}" for method, path in _endpoints()])
def test_each_principal_gets_what_the_matrix_expects(world: World, method: str, path: str):
    expected = EXPECTED.get((method, path))
    assert expected is not None, f"{method} {path} has no row in EXPECTED"
    seen: dict[str, str] = {}
    strays: list[str] = []
    for principal in PRINCIPALS:
        url = path
        for name in ("account_id", "record_id", "member_id", "role_id", "group_id", "key_id",
                     "job_id", "token", "identity_id", "notification_id", "device_id"):
            if "{" + name + "}" in url:
                url = url.replace("{" + name + "}", world.value(name, method, path))
        body = BODIES.get((method, path), {} if method in ("POST", "PATCH", "PUT") else None)
        if callable(body):
            body = body(world)
        headers = dict(world.headers[principal])
        options: dict[str, Any] = {}
        if isinstance(body, tuple):
            options["body"], headers["Content-Type"] = body
        elif body is not None:
            options["json"] = body
        answer = world.stack.api.simulate_request(method, url, headers=headers, **options)
        assert answer.status_code < 500, (principal, method, url, answer.text)
        if answer.status_code in (401, 403, 404) and "json" in answer.headers.get(
                "content-type", ""):
            assert answer.headers["content-type"].startswith("application/problem+json")
        seen[principal] = outcome(answer.status_code)
        if answer.status_code < 300:
            strays += _strays(world.described, method, path, answer)
    assert seen == expected
    assert strays == []


def _strays(described: dict[str, Any], method: str, path: str, answer: Any) -> list[str]:
    """Where a successful answer strays from what /openapi.json documents for it."""
    responses = described["paths"][path][method.lower()]["responses"]
    if str(answer.status_code) not in responses:
        return [f"{method} {path}: {answer.status_code} is not documented"]
    content = (responses[str(answer.status_code)].get("content") or {}).get("application/json")
    if content is None:
        return []
    return conforms(described, content["schema"], answer.json, f"{method} {path}")
