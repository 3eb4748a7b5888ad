"""Every setting in one table: read once from the environment, documented from the table,
and never read while a module is imported."""

from __future__ import annotations

import ast
import dataclasses
import re
import runpy
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from mailsink.config import parse_config
from provisioning.core import dispatch
from provisioning.core.config import (
    PREFIX,
    Entry,
    load_settings,
    markdown_table,
    settings,
    table,
)

ROOT = Path(__file__).resolve().parents[2]
CODE = ("api", "worker", "provisioning", "cli", "mailsink")
# Entry modules whose work at import is to start a server from the settings.
READ_AT_IMPORT = {"api/wsgi.py", "api/gunicorn_conf.py"}
SKIPPED_FOLDERS = {".git", ".venv", "var", "node_modules", "__pycache__", ".mypy_cache",
                   ".pytest_cache", ".ruff_cache"}
SOURCE_NAMES = {"Procfile", "Makefile", "Dockerfile"}
SOURCE_SUFFIXES = {".py", ".md", ".yml", ".yaml", ".toml", ".cfg", ".ini", ".txt", ".sh"}


@pytest.fixture(autouse=True)
def fresh_settings() -> Iterator[None]:
    settings.cache_clear()
    yield
    settings.cache_clear()


def _entries() -> dict[str, Entry]:
    return {entry.variable: entry for entry in table()}


def _sources() -> Iterator[Path]:
    for path in ROOT.rglob("*"):
        relative = path.relative_to(ROOT)
        if any(part in SKIPPED_FOLDERS or part.endswith(".egg-info") for part in relative.parts):
            continue
        if path.is_file() and (path.name in SOURCE_NAMES or path.suffix in SOURCE_SUFFIXES
                               or path.parent.name == "scripts"):
            yield path


def test_docs_configuration_is_the_table_generated_from_the_settings() -> None:
    documented = (ROOT / "docs" / "configuration.md").read_text()
    assert documented == markdown_table(), (
        "docs/configuration.md is out of date: run `provision settings --markdown "
        "> docs/configuration.md`")


def test_every_setting_has_a_meaning_and_is_in_the_docs() -> None:
    documented = (ROOT / "docs" / "configuration.md").read_text()
    for variable, entry in _entries().items():
        assert entry.declared.meaning.strip(), variable
        assert f"`{variable}`" in documented, variable


def _named(text: str) -> set[str]:
    """The PROVISIONING_ variables a text names, also as PREFIX + "NAME" or f"{PREFIX}NAME"."""
    spelled = re.findall(r"PREFIX\s*\+\s*[\"']([A-Z0-9_]+)|\{PREFIX\}([A-Z0-9_]+)", text)
    return set(re.findall(r"PROVISIONING_[A-Z0-9_]*", text)) | {
        PREFIX + name for pair in spelled for name in pair if name}


def test_every_provisioning_variable_named_anywhere_is_a_setting() -> None:
    known = set(_entries())
    secrets = {variable for variable, entry in _entries().items() if entry.declared.secret}
    unknown: dict[str, set[str]] = {}
    for path in _sources():
        if path == Path(__file__):
            continue  # names a missing variable on purpose, below
        for name in _named(path.read_text(errors="replace")):
            if name == PREFIX or name in known or name.removesuffix("_FILE") in secrets:
                continue
            if name.endswith("_") and any(variable.startswith(name) for variable in known):
                continue  # a family spelled as a prefix, e.g. f"PROVISIONING_SMTP_{name}"
            unknown.setdefault(name, set()).add(str(path.relative_to(ROOT)))
    assert unknown == {}


def test_the_name_check_sees_a_variable_that_is_not_a_setting() -> None:
    text = 'os.environ["PROVISIONING_NO_SUCH_THING"]; PREFIX + "ALSO_MISSING"; f"{PREFIX}SMTP_PORT"'
    found = _named(text)
    assert found - set(_entries()) == {"PROVISIONING_NO_SUCH_THING", "PROVISIONING_ALSO_MISSING"}
    assert "PROVISIONING_SMTP_PORT" in found


SAMPLES: dict[Any, tuple[str, Any]] = {int: ("7", 7), float: ("7.5", 7.5)}
SPECIAL = {
    "smtp_security": ("starttls", "starttls"),
    "public_url": ("https://people.example.com/", "https://people.example.com"),
    "mailsink_url": ("http://0.0.0.0:9025/", "http://0.0.0.0:9025"),
    "worker_concurrency": ("0", 0),
    "trusted_proxies": ("10.0.0.0/8, 192.0.2.7", ("10.0.0.0/8", "192.0.2.7")),
    "previous_secret_keys": ("old-key-1,old-key-2", ("old-key-1", "old-key-2")),
    "web_push_services": (" push.example.com, http://127.0.0.1:9000 ",
                          ("push.example.com", "http://127.0.0.1:9000")),
    "billing_webhook_lease_seconds": ("70.5", 70.5),  # beyond the POST's timeout
    "billing_prices_cents": ("base=1000, gold=9900", (("base", 1000), ("gold", 9900))),
    "billing_max_seats": ("pro=500", (("pro", 500),)),
}


@pytest.mark.parametrize("entry", list(table()), ids=lambda entry: entry.variable)
def test_each_setting_is_read_from_its_variable(entry: Entry, monkeypatch: pytest.MonkeyPatch,
                                                tmp_path: Path) -> None:
    monkeypatch.setenv(PREFIX + "SMTP_SECURITY", "tls")  # a login is refused in the clear
    monkeypatch.setenv(PREFIX + "BILLING_WEBHOOK_SECRET", "whsec")  # a URL needs one
    if entry.field in SPECIAL:
        text, expected = SPECIAL[entry.field]
    elif entry.type in SAMPLES:
        text, expected = SAMPLES[entry.type]
    elif "Path" in str(entry.type):
        text, expected = str(tmp_path), tmp_path
    else:
        text, expected = "chosen-value", "chosen-value"
    monkeypatch.setenv(entry.variable, text)
    assert getattr(load_settings(), entry.field) == expected


def test_the_defaults_are_the_embedded_set_up(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in _entries():
        monkeypatch.delenv(variable, raising=False)
    config = load_settings()
    assert (config.api_bind, config.mailsink_url, config.smtp_port) == (
        "127.0.0.1:8000", "http://127.0.0.1:8025", 1025)
    assert config.database_url == f"sqlite:///{config.var_dir / 'provisioner.sqlite3'}"
    assert (config.broker_url, config.public_url) == ("filesystem://", "http://127.0.0.1:8000")


def test_the_database_default_follows_the_var_dir(monkeypatch: pytest.MonkeyPatch,
                                                  tmp_path: Path) -> None:
    monkeypatch.delenv(PREFIX + "DATABASE_URL", raising=False)
    monkeypatch.setenv(PREFIX + "VAR_DIR", str(tmp_path))
    assert load_settings().database_url == f"sqlite:///{tmp_path}/provisioner.sqlite3"


def test_a_value_that_cannot_be_read_names_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PREFIX + "OUTBOX_BATCH_SIZE", "many")
    with pytest.raises(ValueError, match=r"^PROVISIONING_OUTBOX_BATCH_SIZE: 'many'"):
        load_settings()


def test_the_settings_are_read_once_until_cleared(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PREFIX + "OUTBOX_BATCH_SIZE", "11")
    assert settings().outbox_batch_size == 11
    monkeypatch.setenv(PREFIX + "OUTBOX_BATCH_SIZE", "12")
    assert settings().outbox_batch_size == 11
    settings.cache_clear()
    assert settings().outbox_batch_size == 12


def _reads_at_import(path: Path, root: Path = ROOT) -> list[str]:
    """Calls run while a module is imported that read the settings or the environment."""
    found: list[str] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            return  # runs when called, not at import
        if isinstance(node, ast.Call):
            called = ast.unparse(node.func)
            if called.split(".")[-1] in ("settings", "load_settings", "getenv") or (
                    called.startswith(("os.environ", "environ"))):
                found.append(f"{path.relative_to(root)}:{node.lineno} {called}()")
        elif isinstance(node, ast.Subscript) and ast.unparse(node.value) == "os.environ":
            found.append(f"{path.relative_to(root)}:{node.lineno} os.environ[…]")
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text()))
    return found


def test_no_module_reads_a_setting_at_import() -> None:
    found = [read for package in CODE for path in sorted((ROOT / package).rglob("*.py"))
             if str(path.relative_to(ROOT)) not in READ_AT_IMPORT
             for read in _reads_at_import(path)]
    assert found == []


def test_the_import_check_sees_a_module_level_read(tmp_path: Path) -> None:
    (tmp_path / "eager.py").write_text(
        "import os\nfrom provisioning.core.config import settings\n"
        "WINDOW = settings().outbox_dispatch_window_seconds\nHOME = os.environ.get('HOME')\n"
        "def later():\n    return settings()\n")
    found = _reads_at_import(tmp_path / "eager.py", root=tmp_path)
    assert [read.split(" ")[1] for read in found] == ["settings()", "os.environ.get()"]


def test_the_domain_imports_with_settings_that_cannot_be_read() -> None:
    # Were any setting read at import, the broken port would stop the import.
    modules = sorted(
        ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for path in (ROOT / "provisioning").rglob("*.py")
        if "migrations" not in path.parts)
    check = "import importlib, sys\nfor name in sys.argv[1:]: importlib.import_module(name)"
    run = subprocess.run([sys.executable, "-c", check, *modules], cwd=ROOT, text=True,
                         capture_output=True, env={"PROVISIONING_SMTP_PORT": "not-a-port",
                                                   "PATH": "/usr/bin:/bin"})
    assert run.returncode == 0, run.stderr


def test_the_send_wake_up_window_is_read_when_mail_is_queued(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from provisioning.mail import outbox

    sent: list[str] = []
    previous = dispatch.use_sender(lambda name, args, options: sent.append(name))
    try:
        monkeypatch.setenv(PREFIX + "OUTBOX_DISPATCH_WINDOW_SECONDS", "123")
        settings.cache_clear()
        outbox.wake_sender()
        outbox.wake_sender()  # inside the window: one trailing send, in 123 s
        waker = dispatch.debounced(outbox.SEND_TASK, 123.0)
        assert waker.window == 123.0 and sent == [outbox.SEND_TASK]
        assert waker._trailing is not None
        waker._trailing.cancel()
        waker._trailing = None
    finally:
        dispatch.use_sender(previous)


def test_the_celery_app_takes_concurrency_and_beat_intervals_from_the_settings() -> None:
    from worker.celery_app import create_app

    config = dataclasses.replace(load_settings(), worker_concurrency=5, outbox_sweep_seconds=7,
                                 job_sweep_seconds=8, outbox_purge_seconds=60,
                                 job_purge_seconds=90, notification_digest_seconds=120,
                                 push_sweep_seconds=15, billing_announce_seconds=20,
                                 billing_webhook_sweep_seconds=25, season_sweep_seconds=600,
                                 billing_recalc_seconds=3600, billing_due_sweep_seconds=45)
    app = create_app(config)
    assert app.conf.worker_concurrency == 5
    schedule = {name: entry["schedule"] for name, entry in app.conf.beat_schedule.items()}
    assert schedule == {
        "sweep-outbox": timedelta(seconds=7), "sweep-jobs": timedelta(seconds=8),
        "purge-outbox": timedelta(seconds=60), "purge-jobs": timedelta(seconds=90),
        "purge-notifications": timedelta(seconds=60),
        "send-digests": timedelta(seconds=120), "send-pushes": timedelta(seconds=15),
        "announce-billing-events": timedelta(seconds=20),
        "send-billing-webhooks": timedelta(seconds=25),
        "apply-seasons": timedelta(seconds=600),
        "recalculate-billing": timedelta(seconds=3600),
        "recalculate-due-billing": timedelta(seconds=45)}
    one_per_core = create_app(dataclasses.replace(config, worker_concurrency=0))
    assert one_per_core.conf.worker_concurrency is None


def test_a_billing_webhook_url_needs_a_secret_and_a_lease_beyond_the_timeout(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(PREFIX + "BILLING_WEBHOOK_URL", "https://billing.example.com/hooks")
    monkeypatch.delenv(PREFIX + "BILLING_WEBHOOK_SECRET", raising=False)
    monkeypatch.delenv(PREFIX + "BILLING_WEBHOOK_SECRET_FILE", raising=False)
    with pytest.raises(ValueError, match="BILLING_WEBHOOK_SECRET"):
        load_settings()

    secret = tmp_path / "webhook-secret"
    secret.write_text("whsec-from-a-file\n")
    monkeypatch.setenv(PREFIX + "BILLING_WEBHOOK_SECRET_FILE", str(secret))
    config = load_settings()
    assert config.billing_webhook_secret == "whsec-from-a-file"
    assert "whsec-from-a-file" not in repr(config)

    monkeypatch.setenv(PREFIX + "BILLING_WEBHOOK_LEASE_SECONDS", "5")
    with pytest.raises(ValueError, match="BILLING_WEBHOOK_LEASE_SECONDS"):
        load_settings()


def test_gunicorn_binds_and_forks_as_the_settings_say(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PREFIX + "API_BIND", "0.0.0.0:9800")
    monkeypatch.setenv(PREFIX + "WEB_WORKERS", "3")
    conf = runpy.run_module("api.gunicorn_conf")
    assert (conf["bind"], conf["workers"]) == (["0.0.0.0:9800"], 3)


def test_the_procfile_takes_no_setting_from_the_environment_itself() -> None:
    procfile = (ROOT / "Procfile").read_text()
    assert "${" not in procfile and "$" not in procfile.replace("$$", "")
    assert "api.gunicorn_conf" in procfile and "provision mailsink" in procfile


def test_the_mailsink_starts_where_the_settings_expect_it(monkeypatch: pytest.MonkeyPatch,
                                                          tmp_path: Path) -> None:
    from cli.main import mailsink_argv

    monkeypatch.setenv(PREFIX + "MAILSINK_URL", "http://127.0.0.1:9025")
    monkeypatch.setenv(PREFIX + "SMTP_PORT", "2625")
    monkeypatch.setenv(PREFIX + "VAR_DIR", str(tmp_path))
    argv = mailsink_argv(["--delay-ms", "5"])
    assert argv[1:3] == ["-m", "mailsink"]
    sink = parse_config(argv[3:])  # the sink's own parser agrees
    assert (sink.smtp_host, sink.smtp_port, sink.http_host, sink.http_port) == (
        "127.0.0.1", 2625, "127.0.0.1", 9025)
    assert (sink.db, sink.delay_ms) == (tmp_path / "mailsink.sqlite3", 5)


def test_printed_settings_never_show_a_secret(monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    from cli.main import main

    monkeypatch.setenv(PREFIX + "SECRET_KEY", "s3cret-signing-key")
    monkeypatch.setenv(PREFIX + "API_TOKEN", "s3cret-token")
    monkeypatch.setenv(PREFIX + "SMTP_PORT", "2626")
    assert main(["settings"]) == 0
    out = capsys.readouterr().out
    assert "s3cret" not in out and "PROVISIONING_SECRET_KEY=(set)" in out
    assert "PROVISIONING_SMTP_PORT=2626" in out
    assert main(["settings", "--markdown"]) == 0
    assert capsys.readouterr().out == markdown_table()
