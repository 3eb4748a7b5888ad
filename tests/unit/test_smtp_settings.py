"""How the SMTP relay is set up: the settings, their checks, and which refusals are final."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailsink.config import parse_config
from provisioning.core.config import load_settings
from provisioning.mail.sender import SmtpServer, _refused


def test_the_default_relay_is_the_local_sink_in_the_clear(monkeypatch: pytest.MonkeyPatch):
    for name in ("SECURITY", "USERNAME", "PASSWORD", "CA_FILE", "HOST", "PORT"):
        monkeypatch.delenv(f"PROVISIONING_SMTP_{name}", raising=False)
    smtp = load_settings().smtp
    assert (smtp.host, smtp.port, smtp.security, smtp.username) == ("127.0.0.1", 1025, "none",
                                                                    None)
    assert smtp.tls_context() is None


def test_a_production_relay_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch,
                                                         tmp_path: Path):
    monkeypatch.setenv("PROVISIONING_SMTP_HOST", "smtp.example.com")
    monkeypatch.setenv("PROVISIONING_SMTP_PORT", "587")
    monkeypatch.setenv("PROVISIONING_SMTP_SECURITY", " STARTTLS ")
    monkeypatch.setenv("PROVISIONING_SMTP_USERNAME", "apikey")
    monkeypatch.setenv("PROVISIONING_SMTP_PASSWORD", "s3cret-relay-key")
    monkeypatch.setenv("PROVISIONING_SECRET_KEY", "s3cret-signing-key")
    smtp = load_settings().smtp
    assert (smtp.host, smtp.port, smtp.security, smtp.username, smtp.password) == (
        "smtp.example.com", 587, "starttls", "apikey", "s3cret-relay-key")
    shown = repr(load_settings())
    assert "s3cret" not in shown, "neither secret shows in a log line"
    context = smtp.tls_context()
    assert context is not None and context.check_hostname


def test_secrets_may_come_from_files(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    (tmp_path / "smtp").write_text("from-a-file\n")
    (tmp_path / "key").write_text("signing key from a file")
    monkeypatch.setenv("PROVISIONING_SMTP_SECURITY", "tls")
    monkeypatch.setenv("PROVISIONING_SMTP_USERNAME", "apikey")
    monkeypatch.setenv("PROVISIONING_SMTP_PASSWORD", "the variable loses to the file")
    monkeypatch.setenv("PROVISIONING_SMTP_PASSWORD_FILE", str(tmp_path / "smtp"))
    monkeypatch.setenv("PROVISIONING_SECRET_KEY_FILE", str(tmp_path / "key"))
    config = load_settings()
    assert (config.smtp.password, config.secret_key) == ("from-a-file",
                                                          "signing key from a file")
    monkeypatch.setenv("PROVISIONING_SMTP_PASSWORD_FILE", str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="^PROVISIONING_SMTP_PASSWORD_FILE: cannot read"):
        load_settings()


@pytest.mark.parametrize(("security", "username", "complaint"), [
    ("ssl", "", "one of none, starttls, tls, not 'ssl'"),
    ("none", "apikey", "needs TLS"),
])
def test_a_wrong_relay_set_up_stops_the_process_naming_the_setting(
        monkeypatch: pytest.MonkeyPatch, security: str, username: str, complaint: str):
    monkeypatch.setenv("PROVISIONING_SMTP_SECURITY", security)
    monkeypatch.setenv("PROVISIONING_SMTP_USERNAME", username)
    with pytest.raises(ValueError, match="PROVISIONING_SMTP_SECURITY") as raised:
        load_settings()
    assert complaint in str(raised.value)


def test_a_port_that_is_not_a_number_is_not_blamed_on_tls(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("PROVISIONING_SMTP_PORT", "smtp")
    with pytest.raises(ValueError) as raised:
        load_settings()
    assert "SMTP_SECURITY" not in str(raised.value)


def test_a_ca_file_that_is_not_there_is_refused_when_the_context_is_made(tmp_path: Path):
    with pytest.raises(FileNotFoundError):
        SmtpServer("smtp.example.com", 465, security="tls",
                   ca_file=tmp_path / "missing.pem").tls_context()


@pytest.mark.parametrize(("code", "permanent"), [
    (550, True),   # the mailbox does not exist: never again
    (554, True),
    (451, False),  # try later
    (421, False),
    (530, False),  # the relay wants a login: the set-up, not the message
    (535, False),
    (538, False),  # the relay wants TLS first
])
def test_only_a_refusal_of_the_message_itself_is_final(code: int, permanent: bool):
    assert _refused(code, b"5.0.0 no").permanent is permanent


def test_the_sink_takes_a_certificate_a_login_and_implicit_tls(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("MAILSINK_IMPLICIT_TLS", "yes")
    config = parse_config(["--tls-cert", "c.pem", "--tls-key", "k.pem", "--auth", "u:p:w"])
    assert (config.tls_cert, config.tls_key) == (Path("c.pem"), Path("k.pem"))
    assert config.implicit_tls is True
    assert config.auth == ("u", "p:w"), "the password is everything after the first colon"


@pytest.mark.parametrize("argv", [
    ["--tls-cert", "c.pem"],                # a certificate without its key
    ["--auth", "user:password"],            # a login in the clear
    ["--implicit-tls", "true"],             # TLS without a certificate
    ["--tls-cert", "c.pem", "--tls-key", "k.pem", "--auth", "nocolon"],
    ["--tls-cert", "c.pem", "--tls-key", "k.pem", "--implicit-tls", "maybe"],
])
def test_the_sink_refuses_a_half_set_up(argv: list[str], capsys: pytest.CaptureFixture[str]):
    with pytest.raises(SystemExit) as exited:
        parse_config(argv)
    assert exited.value.code == 2
    assert "error:" in capsys.readouterr().err
