"""`provision import`: an admin imports a file from the command line, through the API or
straight into the database, watches its progress, and reads what happened."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import signal
import subprocess
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import AdminAccount, Stack
from tests.support.members import active_member, set_status
from tests.support.processes import VENV_BIN, ManagedProcess, free_port, wait_until

PROGRESS = re.compile(r"^job \d+ (counting rows…|.* rows/s  ETA \d+:\d\d)")


@pytest.fixture(scope="module")
def stack(make_stack: Any) -> Stack:
    # Small chunks: a 20,000-row job reports progress twenty times.
    return make_stack(import_chunk_rows="1000")


@pytest.fixture(scope="module")
def web(stack: Stack) -> Iterator[str]:
    """The API served by gunicorn, as `make run` serves it; yields its base URL."""
    port = free_port()
    server = ManagedProcess(
        f"{stack.name}-gunicorn",
        [str(VENV_BIN / "gunicorn"), "api.wsgi:app", "--bind", f"127.0.0.1:{port}",
         "--workers", "2"],
        log_dir=stack.log_dir, env=stack.env).start()
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: httpx.get(f"{url}/healthz").status_code == 200, timeout=30,
               message=f"gunicorn to answer\n{server.log()[-2000:]}")
    yield url
    server.stop()


def shell(**variables: str) -> dict[str, str]:
    """An admin's shell: none of the test stack's settings unless given."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PROVISIONING_")}
    env.update(variables)
    return env


def operator_shell(stack: Stack) -> dict[str, str]:
    """The operator's shell for direct mode: the stack's broker and so on, but the database
    only through --database-url."""
    return shell(**{key: value for key, value in stack.env.items()
                    if key != "PROVISIONING_DATABASE_URL"})


def provision_import(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(VENV_BIN / "provision"), "import", *args], env=env,
                          capture_output=True, text=True, timeout=60)


def write_people(path: Path, rows: Sequence[tuple[str, str]], header: str = "email,name"
                 ) -> Path:
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(header.split(","))
        writer.writerows(rows)
    return path


def people(count: int) -> list[tuple[str, str]]:
    run = uuid.uuid4().hex[:8]
    return [(f"person{i}.{run}@example.com", f"Person {i}") for i in range(count)]


def last_json(output: str) -> dict[str, Any]:
    return dict(json.loads(output.strip().splitlines()[-1]))


def members_total(stack: Stack, admin: AdminAccount) -> int:
    answer = stack.api.simulate_get(f"/v1/accounts/{admin.id}/users", params={"total": "true"},
                                    headers=admin.headers)
    assert answer.status_code == 200, answer.json
    return int(answer.json["total"])


def test_an_admin_imports_a_file_through_the_api_and_finds_the_error_report(
        stack: Stack, web: str, tmp_path: Path):
    admin = stack.create_account()
    rows = people(297)
    rows.insert(40, ("not-an-email", "Nobody"))
    rows.insert(120, ("two@@example.com", "Nobody Either"))
    rows.insert(200, (rows[10][0].upper(), "Person 10 again"))  # the first row wins
    file = write_people(tmp_path / "team.csv", rows)

    done = provision_import(str(file), "--account", str(admin.id), "--api-url", web,
                            "--poll", "0.2", env=shell(PROVISIONING_API_TOKEN=admin.token))

    assert done.returncode == 0, done.stderr
    result = last_json(done.stdout)
    assert result["status"] == "succeeded"
    assert result["summary"]["created"] == 297
    assert result["summary"]["failed"] == 3
    assert result["summary"]["invitations"] == 297
    assert re.search(r"^  created\s+297$", done.stdout, re.M), done.stdout
    errors_url = f"{web}/v1/jobs/{result['job']}/errors.csv"
    assert f"Error report (3 rows): {errors_url}" in done.stdout
    report = httpx.get(errors_url, headers=admin.headers)
    assert report.status_code == 200
    problems = list(csv.DictReader(io.StringIO(report.text)))
    assert sorted(int(row["line"]) for row in problems) == [42, 122, 202]
    assert [row["code"] for row in problems].count("duplicate_in_file") == 1
    users = httpx.get(f"{web}/v1/accounts/{admin.id}/users", params={"total": "true"},
                      headers=admin.headers).json()
    assert users["total"] == 298  # the admin and everyone imported
    assert "Traceback" not in done.stderr


def test_an_operator_dry_runs_a_file_straight_into_the_database(stack: Stack,
                                                                  tmp_path: Path):
    admin = stack.create_account()
    rows = [*people(40), (admin.email, "Ada Admin"), ("nope", "No Email")]
    file = write_people(tmp_path / "dry.csv", rows)

    done = provision_import(str(file), "--account", str(admin.id), "--dry-run",
                            "--database-url", stack.env["PROVISIONING_DATABASE_URL"],
                            "--poll", "0.2", env=operator_shell(stack))

    assert done.returncode == 0, done.stderr
    result = last_json(done.stdout)
    assert result["status"] == "succeeded"
    summary = result["summary"]
    assert (summary["created"], summary["skipped"], summary["failed"]) == (40, 1, 1)
    assert summary["seats"]["new"] == 40
    assert re.search(r"^  would create\s+40$", done.stdout, re.M), done.stdout
    assert re.search(r"^  would skip\s+1$", done.stdout, re.M), done.stdout
    assert f"/v1/accounts/{admin.id}/imports/{result['job']}/commit" in done.stdout
    assert members_total(stack, admin) == 1  # a dry run writes no member


def test_an_operator_s_import_acts_as_a_member_whose_role_manages_users(stack: Stack,
                                                                        tmp_path: Path):
    from provisioning.access.policy import MEMBER_PERMISSIONS
    from provisioning.core.db import session_scope
    from provisioning.jobs.models import Job
    from provisioning.members.models import MemberStatus

    admin = stack.create_account()
    made = stack.api.simulate_post(f"/v1/accounts/{admin.id}/roles", headers=admin.headers,
                                   json={"name": "People ops",  # may give the member role
                                         "permissions": ["users.manage", *MEMBER_PERMISSIONS]})
    assert made.status_code == 201, made.json
    _, lead, _ = active_member(stack, admin, role="People ops")
    first_admin = stack.api.simulate_get(f"/v1/accounts/{admin.id}/users",
                                         params={"role": "admin"}, headers=admin.headers)
    set_status(first_admin.json["items"][0]["id"], MemberStatus.INACTIVE)
    file = write_people(tmp_path / "ops.csv", people(3))

    done = provision_import(str(file), "--account", str(admin.id), "--dry-run",
                            "--database-url", stack.env["PROVISIONING_DATABASE_URL"],
                            "--poll", "0.2", env=operator_shell(stack))

    assert done.returncode == 0, done.stderr
    result = last_json(done.stdout)
    assert (result["status"], result["summary"]["created"]) == ("succeeded", 3)
    with session_scope() as session:
        assert session.get_one(Job, result["job"]).params["actor_label"] == lead


def test_no_wait_prints_the_queued_job_of_a_json_lines_file(stack: Stack, web: str,
                                                             tmp_path: Path):
    admin = stack.create_account()
    file = tmp_path / "people.ndjson"  # sent as NDJSON: as CSV it would have no email column
    file.write_text("".join(json.dumps({"email": email, "name": name}) + "\n"
                            for email, name in people(5)))

    done = provision_import(str(file), "--account", str(admin.id), "--no-wait",
                            "--api-url", web, env=shell(PROVISIONING_API_TOKEN=admin.token))

    assert done.returncode == 0, done.stderr
    job = json.loads(done.stdout)["job"]
    assert job["status"] in ("queued", "running")

    def finished() -> dict[str, Any] | None:
        view = httpx.get(f"{web}/v1/jobs/{job['id']}", headers=admin.headers).json()
        return view if view["status"] == "succeeded" else None

    assert wait_until(finished, timeout=30, message="the import")["summary"]["created"] == 5


@pytest.mark.parametrize("case", ["no email column", "wrong token", "not this account's admin"])
def test_a_refused_import_says_why_and_exits_2(stack: Stack, web: str, tmp_path: Path,
                                               case: str):
    admin = stack.create_account()
    good = write_people(tmp_path / "good.csv", people(3))
    account = ["--account", str(admin.id)]
    if case == "no email column":
        file = write_people(tmp_path / "names.csv", [("Ada", "Lovelace")], header="first,last")
        done = provision_import(str(file), *account, "--api-url", web,
                                env=shell(PROVISIONING_API_TOKEN=admin.token))
        expected = "no email column"
    elif case == "wrong token":
        done = provision_import(str(good), *account, "--api-url", web, "--token", "not-a-token",
                                env=shell())
        expected = "token is not valid"
    else:
        stranger = stack.create_account()
        done = provision_import(str(good), *account, "--as-admin", stranger.email,
                                "--database-url", stack.env["PROVISIONING_DATABASE_URL"],
                                env=operator_shell(stack))
        expected = "No such account"
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert expected in done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout == ""
    assert members_total(stack, admin) == 1


def test_progress_is_reported_while_a_large_import_runs(stack: Stack, web: str,
                                                        tmp_path: Path):
    admin = stack.create_account()
    file = write_people(tmp_path / "large.csv", people(20_000))

    done = provision_import(str(file), "--account", str(admin.id), "--no-invite",
                            "--api-url", web, "--poll", "0.1",
                            env=shell(PROVISIONING_API_TOKEN=admin.token))

    assert done.returncode == 0, done.stderr
    assert last_json(done.stdout)["summary"]["created"] == 20_000
    lines = done.stderr.splitlines()
    assert "\r" not in done.stderr  # not a terminal: plain lines for a log
    assert any(PROGRESS.match(line) for line in lines), done.stderr
    assert len(lines) < 20, done.stderr  # a few lines for a log, not one per poll
    assert lines[-1].endswith("20,000/20,000 rows (100%) succeeded")


def test_ctrl_c_stops_waiting_and_the_job_goes_on(stack: Stack, web: str, tmp_path: Path):
    admin = stack.create_account()
    file = write_people(tmp_path / "large.csv", people(20_000))
    command = subprocess.Popen(
        [str(VENV_BIN / "provision"), "import", str(file), "--account", str(admin.id),
         "--no-invite", "--api-url", web, "--poll", "0.1"],
        env=shell(PROVISIONING_API_TOKEN=admin.token), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # as in a terminal
    assert command.stderr is not None
    first = command.stderr.readline()  # the job exists: "job N queued, …"
    started = re.match(r"job (\d+) ", first)
    assert started, first
    job_id = int(started.group(1))
    command.send_signal(signal.SIGINT)
    out, err = command.communicate(timeout=30)

    assert command.returncode == 130, (out, err)
    assert f"import job {job_id} keeps running" in err
    assert f"{web}/v1/jobs/{job_id}" in err
    assert "Traceback" not in err

    def finished() -> dict[str, Any] | None:
        job = httpx.get(f"{web}/v1/jobs/{job_id}", headers=admin.headers).json()
        return job if job["status"] in ("succeeded", "failed", "cancelled") else None

    job = wait_until(finished, timeout=30, interval=0.2, message="the import to finish")
    assert job["status"] == "succeeded"
    assert job["summary"]["created"] == 20_000
