"""Benchmark: invitations from API call to message stored in the sink.

Starts throwaway PostgreSQL and Redis, the real mailsink, gunicorn serving the API
and one Celery worker process of concurrency 2, and times N invitations two ways,
each until the sink holds all N:

- per call: one ``POST /v1/accounts/{a}/users`` per invitation (N calls, 8 clients);
- in bulk: one ``POST /v1/accounts/{a}/imports?invite=true`` carrying the N people as a
  JSON array (SPEC §6: webhooks and scripts provision many people in one call).

The floor, measured in the same run against the same sink: smtplib sending the same
number of rendered messages over one reused connection. The send path alone (emails
already queued) has its own floor: smtplib over as many connections at once as the
worker opens.

    python bench/invitations.py [--invitations 10000] [--clients 8] [--api-only]

With ``--api-only`` no worker runs: the per-call API is timed alone (nothing else
competes for the CPU) and the emails stay queued.

Last line: {"bench": "invitations", "invitations_per_s": …, "floor_per_s": …, "ratio": …,
            "bulk_invitations_per_s": …, "bulk_ratio": …, …} (ratios: product / floor)
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import smtplib
import socket
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))


from tests.support.bench import bench_env, work_dir  # noqa: E402
from tests.support.processes import ManagedProcess, free_port, wait_until  # noqa: E402
from tests.support.servers import (  # noqa: E402
    MailSink,
    start_mailsink,
    start_postgres,
    start_redis,
    start_web,
    start_worker,
)

WORKER_PROCESSES = 2  # one worker, prefork concurrency 2


def measure_floor(sink: MailSink, count: int, connections: int = 1) -> float:
    """Raw SMTP: the same kind of rendered invitation, over reused connections used at once
    (one thread each, the messages split between them)."""
    from provisioning.mail.message import build_message, make_message_id
    from provisioning.mail.templates import render_email

    expires = datetime.now(UTC) + timedelta(days=7)
    messages = []
    for i in range(count):
        email = f"floor{i}@bench.example.com"
        rendered = render_email("invite_new", "en", {
            "account_name": "Bench Workspace", "inviter_name": "Bench Admin",
            "invitee_name": None, "email": email, "expires_at": expires,
            "link": f"http://127.0.0.1/invitations/{uuid.uuid4().hex}{uuid.uuid4().hex}",
            "product_name": "Provisioner"})
        messages.append((email, build_message(
            message_id=make_message_id(uuid.uuid4().hex, "bench.example.com"),
            sender="no-reply@bench.example.com", recipient=email, subject=rendered.subject,
            text=rendered.text, html=rendered.html)))

    def send(share: list[tuple[str, bytes]]) -> None:
        with smtplib.SMTP("127.0.0.1", sink.smtp_port) as connection:
            for email, message in share:
                connection.sendmail("no-reply@bench.example.com", [email], message)

    sink.clear()
    started = time.perf_counter()
    with ThreadPoolExecutor(connections) as pool:
        list(pool.map(send, [messages[i::connections] for i in range(connections)]))
    elapsed = time.perf_counter() - started
    assert sink.total() == count
    sink.clear()
    return count / elapsed


def measure_drain(sink: MailSink, account_id: int, count: int) -> float:
    """The send path alone: ``count`` invitation emails already queued in the outbox (made
    by the invitation builder, as an import makes them), one wake-up, timed until the sink
    holds them all."""
    from provisioning.core import dispatch
    from provisioning.core.bulk import insert_rows
    from provisioning.core.db import session_scope
    from provisioning.core.models import utcnow
    from provisioning.mail import outbox
    from provisioning.mail.models import OutboxEmail
    from provisioning.members.invitation_builder import Addressee, Inviter, new_invitations

    made = new_invitations(Inviter(account_id, "Bench", "Bench Admin"),
                           (Addressee(f"drain{i}@bench.example.com", None, "en", False)
                            for i in range(count)), utcnow())
    rows = outbox.email_rows([invitation.email for invitation in made])
    sink.clear()
    with session_scope() as session:  # not outbox.queue_emails: its wake-up would start the clock
        insert_rows(session.connection(), OutboxEmail, outbox.EMAIL_COLUMNS, rows)
    started = time.perf_counter()
    dispatch.send_task(outbox.SEND_TASK, [])
    wait_until(lambda: sink.total() >= count, timeout=max(300, count / 20), interval=0.1,
               message="the queued emails in the sink")
    return count / (time.perf_counter() - started)


def measure_bulk(sink: MailSink, api_port: int, headers: dict[str, str], account_id: int,
                 count: int) -> float:
    """``count`` people in one import call (a JSON array, invitations on), timed from the
    call until the sink holds all their invitations."""
    people = [{"email": f"bulk{i}@bench.example.com", "name": f"Bulk Invitee {i}"}
              for i in range(count)]
    body = json.dumps(people)
    sink.clear()
    connection = http.client.HTTPConnection("127.0.0.1", api_port, timeout=600)
    begin = time.perf_counter()
    connection.request("POST", f"/v1/accounts/{account_id}/imports?invite=true", body=body,
                       headers=headers)
    response = connection.getresponse()
    answer = json.loads(response.read())
    connection.close()
    assert response.status == 202, answer
    wait_until(lambda: sink.total() >= count, timeout=max(600, count / 10), interval=0.2,
               message="every bulk invitation in the sink")
    return count / (time.perf_counter() - begin)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--invitations", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=8, help="concurrent HTTP clients")
    parser.add_argument("--web-workers", type=int, default=2,
                        help="gunicorn sync workers (the Procfile's default)")
    parser.add_argument("--api-only", action="store_true",
                        help="time the API alone: no worker, the emails stay queued")
    args = parser.parse_args()
    count = args.invitations

    work = work_dir()
    postgres = start_postgres(work)
    redis = start_redis(work)
    sink = start_mailsink(work)
    started: list[ManagedProcess] = []
    try:
        database_url = postgres.create_database("bench_invitations")
        api_port = free_port()
        env = bench_env(work, database_url, redis, sink, api_port)
        os.environ.update(env)
        from provisioning.accounts.workspaces import create_account
        from provisioning.core import dispatch
        from provisioning.core.config import settings
        from provisioning.core.db import session_scope
        from provisioning.core.migrate import upgrade
        from worker.celery_app import send_task

        dispatch.use_sender(send_task)  # the send path's own timing wakes its task from here
        upgrade()
        with session_scope() as session:
            account = create_account(session, name="Bench", admin_email="admin@bench.example.com",
                                     admin_password="bench password", plan="base",
                                     seats=2 * count + 1)
        if not args.api_only:
            floor = measure_floor(sink, min(count, 5000))
            print(f"floor: raw smtplib, one connection: {floor:,.0f} msgs/s")
            # The send path's own floor: as many connections at once as the worker opens.
            connections = WORKER_PROCESSES * settings().smtp_connections
            send_floor = measure_floor(sink, min(count, 5000), connections)
            print(f"send-path floor: raw smtplib, {connections} connections at once: "
                  f"{send_floor:,.0f} msgs/s")
            worker = start_worker(work, {**os.environ, **env}, concurrency=WORKER_PROCESSES,
                                  beat=False)
            started.append(worker)
        web = start_web(work, {**os.environ, **env}, api_port, workers=args.web_workers)
        started.append(web)

        headers = {"Authorization": f"Bearer {account.admin_token}",
                   "Content-Type": "application/json"}
        path = f"/v1/accounts/{account.account_id}/users"
        # A lean client: the load generator shares the two cores with the product and
        # should take as little as it can, so each call is one prebuilt request on a
        # fresh socket (gunicorn's sync workers close the connection after each answer).
        head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{api_port}\r\n"
                f"Authorization: Bearer {account.admin_token}\r\n"
                "Content-Type: application/json\r\nConnection: close\r\n").encode()

        def invite(i: int) -> int:
            body = b'{"email": "invitee%d@bench.example.com"}' % i
            with socket.create_connection(("127.0.0.1", api_port), timeout=60) as connection:
                connection.sendall(b"%sContent-Length: %d\r\n\r\n%s" % (head, len(body), body))
                answer = b""
                while chunk := connection.recv(65536):
                    answer += chunk
            return int(answer.split(b" ", 2)[1])

        begin = time.perf_counter()
        with ThreadPoolExecutor(args.clients) as pool:
            statuses = list(pool.map(invite, range(count)))
        api_done = time.perf_counter() - begin
        assert statuses.count(201) == count, {s: statuses.count(s) for s in set(statuses)}
        print(f"API: {count} invitations accepted in {api_done:.1f}s "
              f"({count / api_done:,.0f}/s)")
        if args.api_only:
            print(json.dumps({"bench": "invitations", "api_only": True,
                              "api_invitations_per_s": round(count / api_done, 1)}))
            return
        wait_until(lambda: sink.total() >= count, timeout=max(600, count / 10),
                   interval=0.2, message="every invitation in the sink")
        elapsed = time.perf_counter() - begin
        rate = count / elapsed
        ratio = rate / floor
        print(f"product, per call: {count} invitations, API call to stored in the sink, in "
              f"{elapsed:.1f}s: {rate:,.0f} invitations/s ({ratio:.2f} of the floor)")
        bulk = measure_bulk(sink, api_port, headers, account.account_id, count)
        print(f"product, in bulk: {count} invitations in one API call, to stored in the sink: "
              f"{bulk:,.0f} invitations/s ({bulk / floor:.2f} of the floor)")
        drain = measure_drain(sink, account.account_id, count)
        print(f"send path alone: {count} queued invitation emails to the sink: "
              f"{drain:,.0f} emails/s ({drain / send_floor:.2f} of the send-path floor)")
        print(json.dumps({"bench": "invitations", "invitations_per_s": round(rate, 1),
                          "floor_per_s": round(floor, 1), "ratio": round(ratio, 3),
                          "bulk_invitations_per_s": round(bulk, 1),
                          "bulk_ratio": round(bulk / floor, 3),
                          "api_invitations_per_s": round(count / api_done, 1),
                          "send_path_emails_per_s": round(drain, 1),
                          "send_path_floor_per_s": round(send_floor, 1)}))
    finally:
        for process in reversed(started):
            process.stop()
        sink.stop()
        redis.stop()
        postgres.stop()


if __name__ == "__main__":
    main()
