"""Run the sink: SMTP on the event loop, storage in the writer process, HTTP on a thread."""

from __future__ import annotations

import asyncio
import logging
import random
import signal
import ssl
import sys
from collections.abc import Sequence
from typing import Any

from mailsink.config import LOG_FORMAT, SinkConfig, parse_config
from mailsink.smtp import FaultPlan, LoginCheck, SinkHandler, SinkSMTP
from mailsink.store import MessageStore
from mailsink.web import HttpServer, create_app
from mailsink.writer import MessageWriter

logger = logging.getLogger("mailsink")

# A fixed name: aiosmtpd would otherwise resolve the host's FQDN on every connection.
SMTP_HOSTNAME = "mailsink"


def _security(config: SinkConfig) -> tuple[ssl.SSLContext | None, dict[str, Any]]:
    """The listening socket's TLS (implicit TLS only) and the SMTP session's options."""
    if config.tls_cert is None:
        return None, {}
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(config.tls_cert, config.tls_key)
    if config.implicit_tls:
        options: dict[str, Any] = {"auth_require_tls": False}  # the whole session is TLS
    else:
        options = {"tls_context": context, "require_starttls": True}
    if config.auth:
        options.update(authenticator=LoginCheck(*config.auth), auth_required=True)
    return (context if config.implicit_tls else None), options


async def serve(config: SinkConfig) -> bool:
    """Serve until SIGTERM or SIGINT, store what was accepted, stop; False if the writer died."""
    loop = asyncio.get_running_loop()
    store = MessageStore(config.db)
    store.create_schema()
    writer = MessageWriter(store)
    await writer.start()
    faults = FaultPlan(
        reject_rate=config.reject_rate,
        tempfail_rate=config.tempfail_rate,
        delay_seconds=config.delay_ms / 1000,
        rng=random.Random(config.seed),
    )
    handler = SinkHandler(writer, faults)
    listening_tls, session_options = _security(config)
    smtp_server = await loop.create_server(
        lambda: SinkSMTP(handler, hostname=SMTP_HOSTNAME, enable_SMTPUTF8=True, loop=loop,
                         **session_options),
        host=config.smtp_host,
        port=config.smtp_port,
        ssl=listening_tls,
    )
    http_server = HttpServer(create_app(store), config.http_host, config.http_port)
    http_server.start()

    stop_requested = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop_requested.set)
    smtp_port = smtp_server.sockets[0].getsockname()[1]
    logger.info(
        "mailsink ready smtp=%s:%d%s http=http://%s:%d/ db=%s",
        config.smtp_host,
        smtp_port,
        (" implicit-tls" if config.implicit_tls else " starttls" if config.tls_cert else "")
        + (" auth" if config.auth else ""),
        config.http_host,
        http_server.port,
        config.db,
    )
    stopping = asyncio.ensure_future(stop_requested.wait())
    writer_gone = asyncio.ensure_future(writer.wait_closed())
    await asyncio.wait({stopping, writer_gone}, return_when=asyncio.FIRST_COMPLETED)
    healthy = not writer_gone.done()

    logger.info("mailsink stopping")
    smtp_server.close()
    # The loop keeps running meanwhile, so clients still get their answers.
    await writer.close()
    stopping.cancel()
    http_server.stop()
    logger.info("mailsink stopped")
    return healthy


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of ``python -m mailsink``."""
    config = parse_config(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format=LOG_FORMAT)
    # aiosmtpd logs every connection and command at INFO.
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    if not asyncio.run(serve(config)):
        sys.exit(1)
