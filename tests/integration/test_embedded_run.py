"""The embedded defaults, started the way `make run` starts them: SQLite, kombu's filesystem
transport, the Procfile under honcho. An admin invites, the invitee joins and logs in."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.processes import VENV_BIN, ManagedProcess, free_port, wait_until

PROCESSES = ("web", "worker", "beat", "mail")


@pytest.fixture(scope="module")
def embedded(log_dir: Path) -> Iterator[dict[str, str]]:
    var_dir = log_dir / "embedded-var"
    api_port, smtp_port, mail_http_port = free_port(), free_port(), free_port()
    # Only what a developer's shell would have: none of the test stacks' settings.
    env = {key: value for key, value in os.environ.items() if not key.startswith("PROVISIONING_")}
    env.update({
        "PATH": f"{VENV_BIN}:{env.get('PATH', '')}",
        "PROVISIONING_VAR_DIR": str(var_dir),
        "PROVISIONING_API_BIND": f"127.0.0.1:{api_port}",
        "PROVISIONING_PUBLIC_URL": f"http://127.0.0.1:{api_port}",
        "PROVISIONING_SMTP_PORT": str(smtp_port),
        "PROVISIONING_MAILSINK_URL": f"http://127.0.0.1:{mail_http_port}",
    })
    setup = subprocess.run(
        f"{VENV_BIN}/provision migrate && {VENV_BIN}/provision demo",
        shell=True, env=env, capture_output=True, text=True, check=True,
    )
    demo = dict(re.findall(r"^(account|login|password|token): (.+)$", setup.stdout, re.M))
    assert set(demo) == {"account", "login", "password", "token"}, setup.stdout
    honcho = ManagedProcess("honcho", [str(VENV_BIN / "honcho"), "start", "-f", "Procfile"],
                            log_dir=log_dir, env=env).start()
    api = f"http://127.0.0.1:{api_port}"
    wait_until(lambda: httpx.get(f"{api}/readyz").status_code == 200, timeout=90,
               message=f"the API to be ready\n{honcho.log()[-3000:]}")
    honcho.wait_for_log(" ready.", timeout=90)  # the Celery worker
    yield {**demo, "api": api, "mail": f"http://127.0.0.1:{mail_http_port}",
           "var_dir": str(var_dir)}
    honcho.stop(timeout=30)
    assert not honcho.running()


def test_the_embedded_system_runs_an_invitation_end_to_end(embedded: dict[str, str]):
    assert (Path(embedded["var_dir"]) / "provisioner.sqlite3").exists()
    assert (Path(embedded["var_dir"]) / "broker").is_dir()
    api = httpx.Client(base_url=embedded["api"], timeout=30)
    admin = {"Authorization": f"Bearer {embedded['token']}"}
    email = "embedded.invitee@example.com"

    invited = api.post(f"/v1/accounts/{embedded['account']}/users", headers=admin,
                       json={"email": email, "name": "Emma Embedded", "language": "pt-BR"})
    assert invited.status_code == 201, invited.text

    def delivered() -> list[dict[str, object]]:
        return httpx.get(f"{embedded['mail']}/api/messages", params={"to": email}).json()["items"]

    messages = wait_until(delivered, timeout=60, message="the invitation in the sink")
    assert len(messages) == 1
    text = str(messages[0]["text"])
    token = re.search(re.escape(embedded["api"]) + r"/invitations/([\w-]+)", text)
    assert token, text
    page = api.get(f"/invitations/{token.group(1)}")
    assert page.status_code == 200 and "Choose a password" in page.text
    accepted = api.post(f"/v1/invitations/{token.group(1)}/accept",
                        json={"password": "embedded password"})
    assert accepted.status_code == 200 and accepted.json()["status"] == "active"
    login = api.post("/v1/auth/login", json={"email": email, "password": "embedded password"})
    assert login.status_code == 200 and login.json()["token"]
    # The demo admin printed by `make run` can log in too.
    demo = api.post("/v1/auth/login",
                    json={"email": embedded["login"], "password": embedded["password"]})
    assert demo.status_code == 200
