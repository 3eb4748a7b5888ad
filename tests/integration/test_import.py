"""Bulk import (SPEC §6) over PostgreSQL, Redis, a real worker and the sink.

Odd and bad files give exact counts and error rows; dry runs write nothing;
skip and update do what they say; seats follow R7/R8 in file order.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from sqlalchemy import func, select, update

from provisioning.accounts.models import Account, Role
from provisioning.billing.models import BillingEvent, Subscription
from provisioning.core.db import session_scope
from provisioning.core.models import AuditEntry
from provisioning.mail.models import OutboxEmail
from provisioning.members.models import Identity, Membership
from tests.conftest import Stack
from tests.support.imports import (
    error_keys,
    finished_job,
    member_count,
    people_csv,
    report,
    run_import,
    upload,
)

CHUNK_ROWS = 40


@pytest.fixture(scope="module")
def stack(make_stack: Any) -> Stack:
    return make_stack(import_chunk_rows=str(CHUNK_ROWS), job_slice_seconds="1")


def tag() -> str:
    return uuid.uuid4().hex[:8]


def counts(job: dict[str, Any]) -> dict[str, int]:
    return {key: job["summary"][key] for key in ("created", "updated", "skipped", "failed")}


def with_seasonal_seats(account_id: int) -> None:
    with session_scope() as session:
        session.execute(update(Account).where(Account.id == account_id).values(seasonal_seats=5))


def corpus(t: str) -> list[tuple[str, bytes, str, dict[str, int], set[tuple[int, str, str]]]]:
    """(case, file, media type, expected counts, expected (line, column, code) errors)."""
    e = [f"u{i}.{t}@example.com" for i in range(12)]
    return [
        ("utf-8, commas", f"email,name\n{e[0]},Ann\n{e[1]},Bob\n".encode(), "text/csv",
         {"created": 2, "failed": 0}, set()),
        ("utf-8 with BOM, semicolons, header aliases",
         f"\ufeffE-mail;Full name;Team\n{e[0]};Ann;Sales\n{e[1]};Bob;Support\n".encode(),
         "text/csv", {"created": 2, "failed": 0}, set()),
        ("utf-16 with BOM, tabs", f"Email address\tName\n{e[0]}\tÑandú\n{e[1]}\tÖzgür\n"
         .encode("utf-16"), "text/csv", {"created": 2, "failed": 0}, set()),
        ("quoted fields with newlines keep the following lines right",
         f'email,name\n{e[0]},"Ann\nof two\nlines"\nbad-email,x\n{e[1]},Bob\n'.encode(),
         "text/csv", {"created": 2, "failed": 1}, {(5, "email", "invalid_email")}),
        ("blank lines and trailing empty columns",
         f"email,name,,\n\n{e[0]},Ann,,\n\n\n{e[1]},Bob,,\n,,,\n".encode(), "text/csv",
         {"created": 2, "failed": 0}, set()),
        ("duplicates within the file: the first wins",
         f"email\n{e[0]}\n{e[1]}\n {e[0].upper()} \n{e[1]}\n".encode(), "text/csv",
         {"created": 2, "failed": 2},
         {(4, "email", "duplicate_in_file"), (5, "email", "duplicate_in_file")}),
        ("invalid emails, overlong fields, unknown role and group, bad values",
         ("email,name,role,group,language,user_type,seasonal_start,seasonal_end\n"
          f"{e[0]},Ok,member,Sales,es,full,,\n"
          "not-an-email,x,,,,,,\n"
          f"{e[1]},{'n' * 201},,,,,,\n"
          f"{e[2]},x,overlord,,,,,\n"
          f"{e[3]},x,,Pirates,,,,\n"
          f"{e[4]},x,,,klingon,,,\n"
          f"{e[5]},x,,,,robot,,\n"
          f"{e[6]},x,,,,seasonal,2026-13-01,2026-12-31\n"
          f"{e[7]},x,,,,seasonal,2026-12-31,2026-01-01\n"
          f"{e[8]},x,,,,seasonal,2026-01-01,2026-12-31\n"
          f"{e[9]},x,admin,Free users,,free,,\n").encode(), "text/csv",
         {"created": 3, "failed": 8},
         {(3, "email", "invalid_email"), (4, "name", "too_long"), (5, "role", "unknown_role"),
          (6, "group", "unknown_group"), (7, "language", "invalid_language"),
          (8, "user_type", "invalid_user_type"), (9, "seasonal_start", "invalid_date"),
          (10, "seasonal_end", "seasonal_window")}),
        ("header only", b"email,name,role\n", "text/csv",
         {"created": 0, "updated": 0, "skipped": 0, "failed": 0}, set()),
        ("JSON array with a non-object element",
         json.dumps([{"Email": e[0], "name": "Ann"}, "oops", {"email": e[1], "role": "admin"}])
         .encode(), "application/json", {"created": 2, "failed": 1}, {(2, "row", "invalid_row")}),
        ("NDJSON with a broken line",
         f'{{"email": "{e[0]}"}}\n{{broken\n\n{{"email": "{e[1]}"}}\n'.encode(),
         "application/x-ndjson", {"created": 2, "failed": 1}, {(2, "row", "invalid_row")}),
    ]


@pytest.mark.parametrize("case", range(len(corpus("x"))),
                         ids=[case[0] for case in corpus("x")])
def test_odd_and_bad_files_give_exact_counts_and_error_rows(stack: Stack, case: int):
    admin = stack.create_account()
    with_seasonal_seats(admin.id)
    _, body, media, expected, errors = corpus(tag())[case]
    done = run_import(stack, admin, body, media=media, invite="false")
    assert done["status"] == "succeeded", done
    assert {key: counts(done)[key] for key in expected} == expected
    assert error_keys(stack, admin, done["id"]) == errors
    assert member_count(admin.id) == 1 + done["summary"]["created"]
    assert done["done"] == done["total"]


@pytest.mark.parametrize(("body", "media", "status", "code"), [
    (b"name,phone\nAnn,123\n", "text/csv", 422, "missing_email_column"),
    (b"email,name\na@example.com,A\x00nn\n", "text/csv", 422, "binary_file"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "text/csv", 422, "binary_file"),
    (b"email\n\xff\xfe\xfa caf\xe9@example.com\n", "text/csv", 422, "encoding"),
    (b"", "text/csv", 422, "empty_file"),
    (b'{"email": "a@example.com"', "application/json", 422, "invalid_json"),
    (b"email\na@example.com\n", "application/pdf", 415, "unsupported_media_type"),
])
def test_a_file_level_problem_is_refused_at_once_naming_the_file(
        stack: Stack, body: bytes, media: str, status: int, code: str):
    admin = stack.create_account()
    answer = upload(stack, admin, body, media=media)
    assert answer.status_code == status, answer.json
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json["errors"][0]["field"] == "file"
    assert answer.json["errors"][0]["code"] == code
    assert answer.json["detail"]
    assert member_count(admin.id) == 1


def test_a_multipart_upload_uses_the_field_named_file(stack: Stack):
    admin = stack.create_account()
    body, _ = people_csv(3)
    boundary = "b0undary"
    form = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
            f"filename=\"people.csv\"\r\nContent-Type: application/octet-stream\r\n\r\n"
            ).encode() + body + f"\r\n--{boundary}--\r\n".encode()
    answer = upload(stack, admin, form, media=f"multipart/form-data; boundary={boundary}",
                    invite="false")
    assert answer.status_code == 202, answer.json
    done = finished_job(stack, admin, answer.json["job"]["id"])
    assert counts(done) == {"created": 3, "updated": 0, "skipped": 0, "failed": 0}


def test_formula_values_are_stored_as_text_and_neutralised_in_the_report(stack: Stack):
    admin = stack.create_account()
    t = tag()
    body = (f'email,name,role\nf1.{t}@example.com,"=HYPERLINK(""http://x"")",member\n'
            f"f2.{t}@example.com,Ok,=cmd|' /C calc'!A0\n").encode()
    done = run_import(stack, admin, body, invite="false")
    assert counts(done)["created"] == 1 and counts(done)["failed"] == 1
    with session_scope() as session:
        assert session.scalar(select(Identity.name).where(
            Identity.email == f"f1.{t}@example.com")) == '=HYPERLINK("http://x")'
    (row,) = report(stack, admin, done["id"])
    assert row["code"] == "unknown_role"
    assert row["value"].startswith("'=cmd")


def test_dry_run_writes_nothing_and_its_commit_applies_the_same_snapshot(stack: Stack):
    admin = stack.create_account(seats=2)
    body, emails = people_csv(100)
    body += b"broken-email,Nobody,member,Sales\n"
    dry = run_import(stack, admin, body, dry_run="true")
    assert dry["status"] == "succeeded"
    assert counts(dry) == {"created": 100, "updated": 0, "skipped": 0, "failed": 1}
    assert dry["summary"]["invitations"] == 100
    seats = dry["summary"]["seats"]
    assert (seats["in_use"], seats["new"], seats["purchased"], seats["to_add"]) == (1, 100, 2, 99)
    assert seats["prorated_charge_cents"] > 0
    outcomes = report(stack, admin, dry["id"], "rows")
    assert len(outcomes) == 100 and {row["outcome"] for row in outcomes} == {"create"}
    assert member_count(admin.id) == 1
    with session_scope() as session:
        assert not session.scalar(select(func.count()).select_from(OutboxEmail)
                                  .where(OutboxEmail.account_id == admin.id))
        assert session.scalar(select(Subscription.seats_purchased)
                              .where(Subscription.account_id == admin.id)) == 2

    answer = stack.api.simulate_post(f"/v1/accounts/{admin.id}/imports/{dry['id']}/commit",
                                     headers=admin.headers)
    assert answer.status_code == 202, answer.json
    committed = finished_job(stack, admin, answer.json["job"]["id"])
    assert counts(committed) == counts(dry)
    assert error_keys(stack, admin, committed["id"]) == error_keys(stack, admin, dry["id"])
    assert member_count(admin.id) == 101
    assert committed["summary"]["seats_added"] == 99
    again = stack.api.simulate_post(f"/v1/accounts/{admin.id}/imports/{dry['id']}/commit",
                                     headers=admin.headers)
    assert again.status_code == 409 and again.json["code"] == "already_committed"


def test_an_import_answers_under_its_account_and_its_dry_run_commits_there(stack: Stack):
    admin = stack.create_account()
    dry = run_import(stack, admin, people_csv(3)[0], dry_run="true", invite="false")
    url = f"/v1/accounts/{admin.id}/imports/{dry['id']}"

    shown = stack.api.simulate_get(url, headers=admin.headers)
    assert shown.status_code == 200, shown.json
    assert shown.json == finished_job(stack, admin, dry["id"])  # the job, as /v1/jobs shows it
    assert (shown.json["rows_url"], shown.json["commit_url"]) == (f"{url}/rows.csv",
                                                                  f"{url}/commit")
    assert shown.json["errors_url"] == f"/v1/jobs/{dry['id']}/errors.csv"
    for method, old in (("GET", "rows.csv"), ("POST", "commit")):  # no longer under /v1/jobs
        moved = stack.api.simulate_request(method, f"/v1/jobs/{dry['id']}/{old}",
                                           headers=admin.headers)
        assert moved.status_code == 404, (old, moved.status_code)

    answer = stack.api.simulate_post(f"{url}/commit", headers=admin.headers)
    assert answer.status_code == 202, answer.json
    committed = finished_job(stack, admin, answer.json["job"]["id"])
    assert committed["status"] == "succeeded" and counts(committed)["created"] == 3
    assert committed["dry_run_job"] == dry["id"] and "commit_url" not in committed
    assert member_count(admin.id) == 4
    assert stack.api.simulate_get(url, headers=admin.headers).json["committed_as"] == (
        committed["id"])


def test_an_import_under_another_account_s_url_does_not_exist(stack: Stack):
    admin, other = stack.create_account(), stack.create_account()
    dry = run_import(stack, admin, people_csv(2)[0], dry_run="true", invite="false")
    # The job's own admin, under another account's URL; and that account's admin, under it.
    for who, account in ((admin, other.id), (other, other.id), (other, admin.id)):
        base = f"/v1/accounts/{account}/imports/{dry['id']}"
        for method, tail in (("GET", ""), ("GET", "/rows.csv"), ("POST", "/commit")):
            answer = stack.api.simulate_request(method, base + tail, headers=who.headers)
            assert answer.status_code == 404, (account, tail, answer.status_code)
    assert finished_job(stack, admin, dry["id"])["committed_as"] is None  # nothing committed
    assert member_count(admin.id) == 1


def test_invite_false_sends_nothing_and_the_first_resend_sends_the_first_invitation(
        stack: Stack):
    admin = stack.create_account()
    body, emails = people_csv(5)
    done = run_import(stack, admin, body, invite="false")
    assert done["summary"]["invitations"] == 0
    with session_scope() as session:
        assert not session.scalar(select(func.count()).select_from(OutboxEmail)
                                  .where(OutboxEmail.account_id == admin.id))
    members = stack.api.simulate_get(f"/v1/accounts/{admin.id}/users",
                                     params={"status": "invited"}, headers=admin.headers).json
    assert {m["invitation"]["state"] for m in members["items"]} == {"not_sent"}
    first = members["items"][0]
    sent = stack.api.simulate_post(
        f"/v1/accounts/{admin.id}/users/{first['id']}/invitation/resend", headers=admin.headers)
    assert sent.status_code == 200, sent.json
    assert sent.json["invitation"]["state"] == "queued"
    from tests.support.processes import wait_until
    wait_until(lambda: len(stack.sink.messages(to=first["email"])) == 1, timeout=30,
               message="the first invitation")


def test_importing_the_same_file_twice_with_skip_creates_nothing_the_second_time(stack: Stack):
    admin = stack.create_account()
    body, _ = people_csv(60)
    first = run_import(stack, admin, body, invite="false")
    second = run_import(stack, admin, body, invite="false")
    assert counts(first) == {"created": 60, "updated": 0, "skipped": 0, "failed": 0}
    assert counts(second) == {"created": 0, "updated": 0, "skipped": 60, "failed": 0}
    assert member_count(admin.id) == 61


def test_update_changes_names_roles_and_groups_and_nothing_else(stack: Stack):
    admin = stack.create_account()
    t = tag()
    first = (f"email,name,role,group,language\nx1.{t}@example.com,Ann,member,Sales,es\n"
             f"x2.{t}@example.com,Bob,member,Sales,tr\nx3.{t}@example.com,Cy,member,,ru\n")
    run_import(stack, admin, first.encode(), invite="false")
    changed = (f"email,name,role,group,language,user_type\n"
               f"x1.{t}@example.com,Ann Smith,admin,Support,en,full\n"
               f"x2.{t}@example.com,Bob,member,Sales,en,\n"
               f"x3.{t}@example.com,,,Marketing,,\n")
    done = run_import(stack, admin, changed.encode(), on_existing="update", invite="false")
    assert counts(done) == {"created": 0, "updated": 2, "skipped": 1, "failed": 0}
    by_email = {m["email"]: m for m in stack.api.simulate_get(
        f"/v1/accounts/{admin.id}/users", headers=admin.headers).json["items"]}
    ann, bob, cy = (by_email[f"x{i}.{t}@example.com"] for i in (1, 2, 3))
    assert (ann["name"], ann["role"], ann["group"]) == ("Ann Smith", "admin", "Support")
    assert (ann["language"], ann["user_type"], ann["status"]) == ("es", "full", "invited")
    assert (bob["name"], bob["role"], bob["group"], bob["language"]) == ("Bob", "member",
                                                                         "Sales", "tr")
    assert (cy["name"], cy["role"], cy["group"]) == ("Cy", "member", "Marketing")
    outcomes = {row["email"]: row["outcome"] for row in report(stack, admin, done["id"], "rows")}
    assert outcomes == {f"x1.{t}@example.com": "update", f"x2.{t}@example.com": "unchanged",
                        f"x3.{t}@example.com": "update"}


def test_on_a_trial_rows_past_the_last_free_seat_fail_in_file_order(stack: Stack):
    admin = stack.create_account(plan="trial", seats=10)
    t = tag()
    lines = ["email,user_type"]
    lines += [f"t{i}.{t}@example.com,full" for i in range(6)]
    lines += [f"free{i}.{t}@example.com,free" for i in range(3)]
    lines += [f"t{i}.{t}@example.com,full" for i in range(6, 12)]
    done = run_import(stack, admin, ("\n".join(lines) + "\n").encode(), invite="false")
    # 1 admin + 9 full members fill the trial's 10 seats; free users need none.
    assert counts(done) == {"created": 12, "updated": 0, "skipped": 0, "failed": 3}
    refused = sorted(error_keys(stack, admin, done["id"]))
    assert refused == [(line, "row", "no_seat") for line in (14, 15, 16)]


def test_a_paid_plan_buys_seats_once_per_chunk(stack: Stack):
    admin = stack.create_account(plan="base", seats=1)
    body, _ = people_csv(CHUNK_ROWS * 3)
    done = run_import(stack, admin, body, invite="false")
    assert done["summary"]["seats_added"] == CHUNK_ROWS * 3
    with session_scope() as session:
        events = session.scalars(select(BillingEvent.quantity)
                                 .where(BillingEvent.account_id == admin.id)).all()
        purchased = session.scalar(select(Subscription.seats_purchased)
                                   .where(Subscription.account_id == admin.id))
    assert sorted(events) == [CHUNK_ROWS] * 3
    assert purchased == 1 + CHUNK_ROWS * 3


def test_an_email_of_another_account_fails_without_naming_it(stack: Stack):
    other = stack.create_account()
    admin = stack.create_account()
    t = tag()
    assert stack.invite(other, email=f"taken.{t}@example.com").status_code == 201
    body = f"email\ntaken.{t}@example.com\nfree.{t}@example.com\n".encode()
    done = run_import(stack, admin, body, invite="false")
    assert counts(done)["created"] == 1 and counts(done)["failed"] == 1
    (row,) = report(stack, admin, done["id"])
    assert (row["line"], row["code"]) == ("2", "email_taken")
    assert str(other.id) not in row["message"]


def test_invitations_go_out_once_each_in_the_members_language(stack: Stack):
    admin = stack.create_account()
    t = tag()
    body = (f"email,name,language\ni1.{t}@example.com,Ana,es\ni2.{t}@example.com,Ivan,ru\n"
            f"i3.{t}@example.com,Ali,\n").encode()
    done = run_import(stack, admin, body)
    assert done["summary"]["invitations"] == 3
    from tests.support.processes import wait_until
    wait_until(lambda: len(stack.sink.messages(q=f".{t}@example.com")) == 3, timeout=30,
               message="three invitations")
    langs = {m["to"][0] if isinstance(m["to"], list) else m["to"]: m["headers"]
             for m in stack.sink.messages(q=f".{t}@example.com")}
    assert len(langs) == 3
    for message in stack.sink.messages(q=f".{t}@example.com"):
        assert message["delivery_count"] == 1


def test_jobs_are_visible_only_to_the_admins_of_their_account(stack: Stack):
    admin = stack.create_account()
    stranger = stack.create_account()
    body, _ = people_csv(2)
    done = run_import(stack, admin, body, invite="false")
    jobs = f"/v1/jobs/{done['id']}"
    imports = [f"/v1/accounts/{account}/imports/{done['id']}" for account in (admin.id,
                                                                              stranger.id)]
    for method, path in (("GET", jobs), ("GET", f"{jobs}/errors.csv"), ("POST", f"{jobs}/cancel"),
                         *((method, base + tail) for base in imports
                           for method, tail in (("GET", ""), ("GET", "/rows.csv"),
                                                ("POST", "/commit")))):
        answer = stack.api.simulate_request(method, path, headers=stranger.headers)
        assert answer.status_code == 404, (path, answer.status_code)
    member = stack.invite(admin, email=f"m.{tag()}@example.com")
    assert member.status_code == 201


def test_each_import_leaves_one_audit_entry_with_its_summary(stack: Stack):
    admin = stack.create_account()
    body, _ = people_csv(CHUNK_ROWS * 2 + 5)
    done = run_import(stack, admin, body, invite="false")
    with session_scope() as session:
        entries = session.scalars(select(AuditEntry).where(
            AuditEntry.account_id == admin.id, AuditEntry.action == "members.import")).all()
    assert len(entries) == 1
    assert entries[0].after is not None
    assert entries[0].after["summary"]["created"] == done["summary"]["created"]
    assert entries[0].actor_label == admin.email


def test_cancel_stops_at_a_chunk_boundary_and_keeps_what_was_written(stack: Stack):
    admin = stack.create_account()
    body, _ = people_csv(6000)
    answer = upload(stack, admin, body, invite="false")
    job_id = answer.json["job"]["id"]
    cancelled = stack.api.simulate_post(f"/v1/jobs/{job_id}/cancel", headers=admin.headers)
    assert cancelled.status_code == 200 and cancelled.json["status"] == "cancelled"
    done = finished_job(stack, admin, job_id)
    assert done["status"] == "cancelled"
    # A chunk commits with the job's summary under the job row's lock, or not at all:
    # members and summary agree at every moment after the cancel.
    after = finished_job(stack, admin, job_id)
    assert after["status"] == "cancelled"
    assert member_count(admin.id) - 1 == after["summary"]["created"] < 6000
    again = stack.api.simulate_post(f"/v1/jobs/{job_id}/cancel", headers=admin.headers)
    assert again.status_code == 409


def test_custom_role_names_match_case_insensitively(stack: Stack):
    admin = stack.create_account()
    with session_scope() as session:
        session.add(Role(account_id=admin.id, name="Sales Lead", permissions=["leads.view"]))
    t = tag()
    done = run_import(stack, admin, f"email,role\nr.{t}@example.com,sales lead\n".encode(),
                      invite="false")
    assert counts(done)["created"] == 1
    with session_scope() as session:
        role = session.scalar(select(Role.name).join(Membership, Membership.role_id == Role.id)
                              .join(Identity, Identity.id == Membership.identity_id)
                              .where(Identity.email == f"r.{t}@example.com"))
    assert role == "Sales Lead"


def test_an_upload_cut_off_mid_way_is_refused_and_imports_nothing(stack: Stack):
    admin = stack.create_account()
    body, _ = people_csv(200)
    answer = stack.api.simulate_post(
        f"/v1/accounts/{admin.id}/imports", body=body[: len(body) // 2],
        headers={**admin.headers, "Content-Type": "text/csv", "Content-Length": str(len(body))})
    assert answer.status_code == 422, answer.json
    assert answer.json["errors"][0]["code"] == "incomplete_upload"
    assert "cut off" in answer.json["detail"]
    assert member_count(admin.id) == 1


def test_an_admin_lists_the_accounts_imports_newest_first_with_their_progress(stack: Stack):
    admin, other = stack.create_account(seats=20), stack.create_account()
    first = run_import(stack, admin, people_csv(3)[0])
    second = run_import(stack, admin, people_csv(2)[0], dry_run="true")
    run_import(stack, other, people_csv(1)[0])  # another account's: never listed here
    url = f"/v1/accounts/{admin.id}/imports"

    listed = stack.api.simulate_get(url, headers=admin.headers).json
    assert [job["id"] for job in listed["items"]] == [second["id"], first["id"]]
    assert listed["next_cursor"] is None
    assert listed["items"][1] == first  # the same view as GET /v1/jobs/{id}, progress included
    assert counts(listed["items"][1])["created"] == 3 and listed["items"][0]["commit_url"]

    page = stack.api.simulate_get(url, params={"limit": 1}, headers=admin.headers).json
    rest = stack.api.simulate_get(url, params={"limit": 1, "cursor": page["next_cursor"]},
                                  headers=admin.headers).json
    assert [j["id"] for j in page["items"] + rest["items"]] == [second["id"], first["id"]]
    assert rest["next_cursor"] is None
    running = stack.api.simulate_get(url, params={"status": "running"}, headers=admin.headers)
    assert running.json["items"] == []

    bad = stack.api.simulate_get(url, params={"status": "done"}, headers=admin.headers)
    assert bad.status_code == 422 and bad.json["errors"][0]["field"] == "status"
    assert stack.api.simulate_get(url, headers=other.headers).status_code == 404
    assert stack.api.simulate_get(url).status_code == 401
