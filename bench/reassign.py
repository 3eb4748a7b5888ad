"""Benchmark: reassigning a member's million records, from the API call to job `succeeded`.

Starts throwaway PostgreSQL and Redis, the real mailsink, gunicorn serving the API and one
Celery worker process of concurrency 2, and warms them up with a small reassignment. The
data, seeded twice (two accounts, identical): one member owns 250,000 leads, contacts,
customers and tasks each (1,000,000 records), interleaved with the records of 10 other
members (25,000 of each kind each), so the tables hold 2,000,000 rows of each account.

1. The floor, on the first copy: one plain `UPDATE … SET responsible_id = :to WHERE
   responsible_id = :from` per table, in one transaction (FLOORS.md: measured in the run).
2. The product, on the second copy: `POST /v1/accounts/{a}/users/{u}/disable
   {"reassign_to"}` over HTTP, then the job polled until it has succeeded; every record
   counted after. The worker's peak memory (VmHWM) is read at the end.

Both copies start alike: vacuumed and analysed before each measurement (not timed).

    python bench/reassign.py [--per-kind 250000] [--others 10]

Last line: {"bench": "reassign", "seconds": …, "floor_seconds": …, "ratio": …,
            "records": 1000000, "worker_peak_rss_mb": …}
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from sqlalchemy import create_engine, text  # noqa: E402

from tests.support.bench import bench_env, new_account, work_dir  # noqa: E402
from tests.support.processes import (  # noqa: E402
    ManagedProcess,
    free_port,
    peak_rss_mb,
    wait_until,
)
from tests.support.servers import (  # noqa: E402
    start_mailsink,
    start_postgres,
    start_redis,
    start_web,
    start_worker,
)

KINDS = ("leads", "contacts", "customers", "tasks")
TITLE = {"leads": "name", "contacts": "name", "customers": "name", "tasks": "title"}


def seed(account_id: int, per_kind: int, others: int) -> tuple[int, int, list[int]]:
    """The owner, the member who receives, and the others; in every table the owner's records
    alternate with the others' (COPY)."""
    from provisioning.core.bulk import insert_rows
    from provisioning.core.db import session_scope
    from tests.support.records import MODELS, add_members

    owner, target, *rest = add_members(account_id, others + 2, prefix="bench")
    now = datetime.now(UTC)
    theirs = (per_kind // others) * others
    for kind in KINDS:
        def rows(kind: str = kind) -> Iterator[tuple[Any, ...]]:
            for i in range(per_kind):
                yield (account_id, owner, f"{kind} {i}", now, now)
                if i < theirs:
                    yield (account_id, rest[i % others], f"{kind} {i} of another", now, now)

        with session_scope() as session:
            insert_rows(session.connection(), MODELS[kind],
                        ("account_id", "responsible_id", TITLE[kind], "created_at",
                         "updated_at"), rows())
    return owner, target, rest


def vacuum(url: str) -> None:
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        for kind in KINDS:
            connection.execute(text(f"VACUUM ANALYZE {kind}"))
        connection.execute(text("CHECKPOINT"))
    engine.dispose()


def measure_floor(url: str, owner: int, target: int) -> float:
    """One plain UPDATE per table, in one transaction."""
    engine = create_engine(url)
    try:
        started = time.perf_counter()
        with engine.begin() as connection:
            for kind in KINDS:
                connection.execute(text(f"UPDATE {kind} SET responsible_id = :to "  # noqa: S608
                                        "WHERE responsible_id = :from"),
                                   {"to": target, "from": owner})
        return time.perf_counter() - started
    finally:
        engine.dispose()


def count_owned(url: str, member_id: int) -> int:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return sum(int(connection.execute(text(
                f"SELECT count(*) FROM {kind} WHERE responsible_id = :m"),  # noqa: S608
                {"m": member_id}).scalar_one()) for kind in KINDS)
    finally:
        engine.dispose()


def call(connection: http.client.HTTPConnection, method: str, path: str, token: str,
         body: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
    payload = json.dumps(body).encode() if body is not None else None
    connection.request(method, path, body=payload, headers={
        "Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    response = connection.getresponse()
    return response.status, json.loads(response.read() or b"{}")


def reassign(api_port: int, token: str, account_id: int, owner: int, target: int
             ) -> dict[str, Any]:
    """The API call, then the job polled over one kept-alive connection until it is done."""
    connection = http.client.HTTPConnection("127.0.0.1", api_port, timeout=600)
    try:
        status, answer = call(connection, "POST",
                              f"/v1/accounts/{account_id}/users/{owner}/disable", token,
                              {"reassign_to": target})
        assert status == 202, answer
        job_id = answer["job"]["id"]
        seen: dict[str, Any] = {}

        def finished() -> bool:
            seen.update(call(connection, "GET", f"/v1/jobs/{job_id}", token)[1])
            return seen["status"] in ("succeeded", "failed", "cancelled")

        wait_until(finished, timeout=1800, interval=0.1, message=f"job {job_id}: {seen}")
        assert seen["status"] == "succeeded", seen
        return seen
    finally:
        connection.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-kind", type=int, default=250_000)
    parser.add_argument("--others", type=int, default=10)
    args = parser.parse_args()
    records = 4 * args.per_kind
    work = work_dir()
    postgres = start_postgres(work)
    redis = start_redis(work)
    sink = start_mailsink(work)
    started: list[ManagedProcess] = []
    try:
        database_url = postgres.create_database("bench_reassign")
        api_port = free_port()
        env = bench_env(work, database_url, redis, sink, api_port)
        os.environ.update(env)
        from provisioning.core.config import settings
        from provisioning.core.migrate import upgrade

        settings.cache_clear()
        upgrade()

        begin = time.perf_counter()
        floor_account, _ = new_account(args.others + 3)
        floor_owner, floor_target, _ = seed(floor_account, args.per_kind, args.others)
        account_id, token = new_account(args.others + 3)
        owner, target, others = seed(account_id, args.per_kind, args.others)
        warm_account, warm_token = new_account(5)
        warm_owner, warm_target, _ = seed(warm_account, 1000, 2)
        print(f"seeded 2 x {2 * records:,} records in {time.perf_counter() - begin:.1f}s")

        vacuum(database_url)
        floor = measure_floor(database_url, floor_owner, floor_target)
        assert count_owned(database_url, floor_owner) == 0
        print(f"floor: one UPDATE per table, {records:,} records: {floor:.2f}s")
        vacuum(database_url)

        worker = start_worker(work, {**os.environ, **env}, concurrency=2, beat=True)
        started.append(worker)
        web = start_web(work, {**os.environ, **env}, api_port, workers=2)
        started.append(web)
        reassign(api_port, warm_token, warm_account, warm_owner, warm_target)  # warm up

        begin = time.perf_counter()
        job = reassign(api_port, token, account_id, owner, target)
        seconds = time.perf_counter() - begin
        assert job["done"] == job["total"] == records, job
        assert count_owned(database_url, owner) == 0
        assert count_owned(database_url, target) == records
        assert all(count_owned(database_url, other) == 4 * (args.per_kind // args.others)
                   for other in others)
        peak = peak_rss_mb(worker)
        print(f"product: {records:,} records, API call to succeeded in {seconds:.2f}s "
              f"({records / seconds:,.0f} records/s, {floor / seconds:.2f} of the floor); "
              f"worker peak RSS {peak:.0f} MB")
        print(json.dumps({"bench": "reassign", "seconds": round(seconds, 2),
                          "floor_seconds": round(floor, 2), "ratio": round(floor / seconds, 3),
                          "records": records, "worker_peak_rss_mb": round(peak, 1)}))
    finally:
        for process in reversed(started):
            process.stop()
        sink.stop()
        redis.stop()
        postgres.stop()


if __name__ == "__main__":
    main()
