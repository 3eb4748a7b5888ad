"""The sink's settings: command-line flags, each with a ``MAILSINK_*`` variable behind it.

A flag wins over its environment variable, which wins over the built-in default.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ENV_PREFIX = "MAILSINK_"
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@dataclass(frozen=True)
class SinkConfig:
    """Where the sink listens and stores, and which faults it injects."""

    smtp_host: str
    smtp_port: int
    http_host: str
    http_port: int
    db: Path
    reject_rate: float
    tempfail_rate: float
    delay_ms: int
    seed: int | None
    # TLS and a login, to try a production SMTP set-up against the sink: with a
    # certificate the sink requires STARTTLS (or, ``implicit_tls``, speaks TLS from the
    # first byte); with ``auth`` (``user:password``) it requires that login.
    tls_cert: Path | None = None
    tls_key: Path | None = None
    implicit_tls: bool = False
    auth: tuple[str, str] | None = None


def _rate(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"a rate is between 0 and 1, not {text}")
    return value


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected 0 or more, not {text}")
    return value


def _flag(text: str) -> bool:
    value = text.strip().lower()
    if value not in {"1", "0", "true", "false", "yes", "no", "on", "off"}:
        raise argparse.ArgumentTypeError(f"expected true or false, not {text}")
    return value in {"1", "true", "yes", "on"}


def _login(text: str) -> tuple[str, str]:
    user, colon, password = text.partition(":")
    if not (user and colon and password):
        raise argparse.ArgumentTypeError("expected USER:PASSWORD")
    return user, password


def parse_config(argv: Sequence[str] | None = None) -> SinkConfig:
    """Read the settings from ``argv`` (default: ``sys.argv``) and the environment."""
    parser = argparse.ArgumentParser(
        prog="python -m mailsink",
        description="SMTP sink with an HTTP viewer and JSON API, for development and tests.",
    )

    def option(name: str, default: str | None, **kwargs: Any) -> None:
        # argparse runs ``type`` on string defaults too, so env values are validated alike.
        env_name = ENV_PREFIX + name.upper().replace("-", "_")
        parser.add_argument(
            f"--{name}",
            default=os.environ.get(env_name, default),
            help=f"(env {env_name}, default {default})",
            **kwargs,
        )

    option("smtp-host", "127.0.0.1")
    option("smtp-port", "1025", type=int)
    option("http-host", "127.0.0.1")
    option("http-port", "8025", type=int)
    option("db", "var/mailsink.sqlite3", type=Path)
    option("reject-rate", "0", type=_rate, metavar="SHARE")
    option("tempfail-rate", "0", type=_rate, metavar="SHARE")
    option("delay-ms", "0", type=_non_negative, metavar="MS")
    option("seed", None, type=int)
    option("tls-cert", None, type=Path, metavar="PEM")
    option("tls-key", None, type=Path, metavar="PEM")
    option("implicit-tls", "false", type=_flag, metavar="BOOL")
    option("auth", None, type=_login, metavar="USER:PASSWORD")
    args = parser.parse_args(argv)
    if args.reject_rate + args.tempfail_rate > 1.0:
        parser.error("--reject-rate and --tempfail-rate add up to more than 1")
    if (args.tls_cert is None) != (args.tls_key is None):
        parser.error("--tls-cert and --tls-key go together")
    if args.tls_cert is None and (args.implicit_tls or args.auth):
        parser.error("--implicit-tls and --auth need --tls-cert and --tls-key "
                     "(a login crosses the network encrypted only)")
    return SinkConfig(
        smtp_host=args.smtp_host,
        smtp_port=args.smtp_port,
        http_host=args.http_host,
        http_port=args.http_port,
        db=args.db,
        reject_rate=args.reject_rate,
        tempfail_rate=args.tempfail_rate,
        delay_ms=args.delay_ms,
        seed=args.seed,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        implicit_tls=args.implicit_tls,
        auth=args.auth,
    )
