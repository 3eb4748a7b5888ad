"""How fast the mailsink ingests, against an aiosmtpd floor measured in the same run.

Usage: ``python bench/mailsink.py [--messages 5000]``

Both runs send the same pre-built ~3 KB multipart/alternative messages from four
threads, each with one reused SMTP connection. The floor is an aiosmtpd
``Controller`` whose handler only appends to a list; the product is the real sink
(``python -m mailsink``), storing to a fresh SQLite file. Each runs in a process of
its own, apart from the client threads. The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Sequence
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.policy import compat32
from email.utils import formatdate, make_msgid
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

REPO_ROOT = Path(__file__).resolve().parents[1]
CLIENT_THREADS = 4
SENDER = "no-reply@provisioner.local"
# SMTP wants CRLF line ends, and smtplib sends bytes unchanged.
WIRE_POLICY = compat32.clone(linesep="\r\n")


def build_messages(count: int) -> list[tuple[str, bytes]]:
    """``count`` invitation-like emails (text + HTML, UTF-8), each with its own Message-ID."""
    messages = []
    for number in range(count):
        recipient = f"member{number}@example.com"
        text = (
            f"Hallo Jürgen {number},\n\nSie wurden in den Arbeitsbereich „Vertrieb“ eingeladen. "
            "Bitte bestätigen Sie die Einladung über den folgenden Link:\n"
            f"https://provisioner.local/invitations/{number:032x}\n\n" + "Grüße, Ihr Team. " * 32
        )
        html = "<html><body><p>" + text.replace("\n", "<br>") + "</p></body></html>"
        message = MIMEMultipart("alternative")
        message["Subject"] = f"Einladung zu Provisioner #{number}"
        message["From"] = f"Provisioner <{SENDER}>"
        message["To"] = f"Member {number} <{recipient}>"
        message["Date"] = formatdate()
        message["Message-ID"] = make_msgid(domain="provisioner.local")
        message.attach(MIMEText(text, "plain", "utf-8"))
        message.attach(MIMEText(html, "html", "utf-8"))
        messages.append((recipient, message.as_bytes(policy=WIRE_POLICY)))
    return messages


def send_all(port: int, messages: Sequence[tuple[str, bytes]]) -> float:
    """Send every message over one connection per thread; return messages per second."""
    shares = [messages[index::CLIENT_THREADS] for index in range(CLIENT_THREADS)]
    errors: list[BaseException] = []
    start = threading.Barrier(CLIENT_THREADS + 1)

    def client(share: Sequence[tuple[str, bytes]]) -> None:
        try:
            with smtplib.SMTP("127.0.0.1", port) as connection:
                start.wait()
                for recipient, raw in share:
                    connection.sendmail(SENDER, [recipient], raw)
        except BaseException as exc:
            errors.append(exc)
            start.abort()

    threads = [threading.Thread(target=client, args=(share,)) for share in shares]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    if errors:
        raise RuntimeError(f"a client failed: {errors[0]!r}")
    return len(messages) / elapsed


class _ListHandler:
    def __init__(self) -> None:
        self.received: list[bytes] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        assert isinstance(envelope.content, bytes)
        self.received.append(envelope.content)
        return "250 OK"


def _serve_floor(port: int, ready: Event, done: Event, received: Queue[int]) -> None:
    """Body of the floor process: an aiosmtpd server that keeps messages in a list."""
    handler = _ListHandler()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    ready.set()
    done.wait()
    controller.stop()
    received.put(len(handler.received))


def measure_floor(messages: Sequence[tuple[str, bytes]]) -> float:
    """Messages per second into an aiosmtpd server that only keeps them in a list.

    It runs in its own process, as the sink does: in this process it would share
    the GIL with the client threads and measure about half its real speed.
    """
    context = multiprocessing.get_context("spawn")
    port, ready, done, received = _free_port(), context.Event(), context.Event(), context.Queue()
    server = context.Process(target=_serve_floor, args=(port, ready, done, received))
    server.start()
    try:
        if not ready.wait(30):
            raise TimeoutError("the floor server did not start within 30 s")
        rate = send_all(port, messages)
        done.set()
        count = received.get(timeout=30)
    finally:
        done.set()
        server.join(timeout=30)
        if server.is_alive():
            server.kill()
    if count != len(messages):
        raise RuntimeError(f"floor sink got {count} of {len(messages)}")
    return rate


def measure_sink(messages: Sequence[tuple[str, bytes]], workdir: Path) -> float:
    """Messages per second into the real sink, checked through its API afterwards."""
    smtp_port, http_port = _free_port(), _free_port()
    log_path = workdir / "mailsink.log"
    with log_path.open("wb") as log:
        sink = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mailsink",
                f"--smtp-port={smtp_port}",
                f"--http-port={http_port}",
                f"--db={workdir / 'mailsink.sqlite3'}",
            ],
            cwd=REPO_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        )
    try:
        _wait_for_log(sink, log_path, "mailsink ready")
        rate = send_all(smtp_port, messages)
        url = f"http://127.0.0.1:{http_port}/api/messages?limit=1"
        with urllib.request.urlopen(url, timeout=30) as response:
            total = json.load(response)["total"]
        if total != len(messages):
            raise RuntimeError(f"the sink holds {total} of {len(messages)} messages")
    finally:
        sink.send_signal(signal.SIGTERM)
        try:
            sink.wait(timeout=30)
        except subprocess.TimeoutExpired:
            sink.kill()
            sink.wait()
    return rate


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for_log(process: subprocess.Popen[bytes], log_path: Path, text: str) -> None:
    deadline = time.monotonic() + 30
    while text.encode() not in log_path.read_bytes():
        if process.poll() is not None:
            raise RuntimeError(f"mailsink exited early:\n{log_path.read_text(errors='replace')}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"mailsink did not log {text!r} within 30 s")
        time.sleep(0.05)


def main() -> None:
    """Run the floor and the product on the same messages and report both."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=5000)
    args = parser.parse_args()

    messages = build_messages(args.messages)
    average = sum(len(raw) for _, raw in messages) / len(messages)
    print(
        f"{len(messages)} messages of {average:.0f} bytes, {CLIENT_THREADS} client threads",
        flush=True,
    )
    floor = measure_floor(messages)
    print(f"floor (aiosmtpd keeping a list, own process): {floor:,.0f} msgs/s", flush=True)
    with tempfile.TemporaryDirectory(prefix="mailsink-bench-") as workdir:
        product = measure_sink(messages, Path(workdir))
    print(f"mailsink (subprocess, SQLite): {product:,.0f} msgs/s")
    ratio = product / floor
    print(f"ratio: {ratio:.2f}")
    print(
        json.dumps(
            {
                "bench": "mailsink",
                "msgs_per_s": round(product, 1),
                "floor_per_s": round(floor, 1),
                "ratio": round(ratio, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
