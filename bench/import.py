"""Benchmark: bulk import, from upload to job `succeeded`.

Starts throwaway PostgreSQL and Redis, the real mailsink, gunicorn serving the
API and one Celery worker process of concurrency 2, and warms them up with two
200-row imports (a process's first request pays for imports and statement
compiling). Then, on PostgreSQL:

1. 100,000 rows, invitations off: upload through the HTTP API, time until the
   job has succeeded. The floor, measured in the same run: SQLAlchemy Core
   `insert()` of the same rows as a list of dicts into an empty table of the
   same shape (FLOORS.md).
2. 100,000 rows, invitations on: time until the job has succeeded and until the
   sink holds all 100,000 invitations.
3. 1,000,000 rows, invitations off: the worker's peak memory (VmHWM).

And on SQLite (the embedded default), the same 100,000 rows through the same
pipeline in-process, with its own Core-insert floor.

    python bench/import.py [--rows 100000] [--million-rows 1000000]

Last line: {"bench": "import", "rows_per_s": …, "floor_rows_per_s": …, "ratio": …,
            "emails_per_s": …, "peak_rss_mb": …, …}
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from sqlalchemy import (  # noqa: E402
    BigInteger,
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    create_engine,
    insert,
)

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

LANGUAGES = ("en", "es", "pt-BR", "id", "tr", "ru")
GROUPS = ("Sales", "Marketing", "Support")


def write_file(path: Path, rows: int, tag: str) -> Path:
    """`name,email,role,group,language`: unique ASCII emails, non-ASCII names."""
    with path.open("w", encoding="utf-8") as out:
        out.write("name,email,role,group,language\n")
        for i in range(rows):
            out.write(f"José Núñez {i},user{i}.{tag}@example.com,member,{GROUPS[i % 3]},"
                      f"{LANGUAGES[i % 6]}\n")
    return path


def floor_rows(path: Path) -> list[dict[str, Any]]:
    import csv

    now = datetime.now(UTC)
    with path.open(encoding="utf-8") as source:
        return [{"account_id": 1, "email": row["email"], "name": row["name"],
                 "role": row["role"], "status": "invited", "created_at": now}
                for row in csv.DictReader(source)]


def measure_floor(url: str, rows: list[dict[str, Any]]) -> float:
    """Core insert() of the same rows, a list of dicts, into an empty table of the same shape."""
    engine = create_engine(url)
    metadata = MetaData()
    users = Table(f"floor_users_{uuid.uuid4().hex[:6]}", metadata,
                  Column("id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True),
                  Column("account_id", BigInteger), Column("email", String(320), unique=True),
                  Column("name", String(200)), Column("role", String(100)),
                  Column("status", String(16)), Column("created_at", DateTime(timezone=True)))
    metadata.create_all(engine)
    try:
        started = time.perf_counter()
        with engine.begin() as connection:
            connection.execute(insert(users), rows)
        return len(rows) / (time.perf_counter() - started)
    finally:
        metadata.drop_all(engine)
        engine.dispose()


def upload(api_port: int, token: str, account_id: int, path: Path, **params: str) -> int:
    query = "&".join(f"{key}={value}" for key, value in params.items())
    connection = http.client.HTTPConnection("127.0.0.1", api_port, timeout=600)
    with path.open("rb") as body:
        connection.request("POST", f"/v1/accounts/{account_id}/imports?{query}", body=body,
                           headers={"Authorization": f"Bearer {token}",
                                    "Content-Type": "text/csv",
                                    "Content-Length": str(path.stat().st_size)})
        response = connection.getresponse()
        answer = json.loads(response.read())
    assert response.status == 202, answer
    return int(answer["job"]["id"])


def wait_for_job(api_port: int, token: str, job_id: int, timeout: float = 1800
                 ) -> dict[str, Any]:
    """Poll the job over one kept-alive connection: the poller shares the two cores with
    the product, so it takes as little CPU as it can (a new client per poll costs ms)."""
    seen: dict[str, Any] = {}
    connection = http.client.HTTPConnection("127.0.0.1", api_port, timeout=60)

    def finished() -> bool:
        connection.request("GET", f"/v1/jobs/{job_id}",
                           headers={"Authorization": f"Bearer {token}"})
        seen.update(json.loads(connection.getresponse().read()))
        return seen["status"] in ("succeeded", "failed", "cancelled")

    try:
        wait_until(finished, timeout=timeout, interval=0.1, message=f"job {job_id}: {seen}")
    finally:
        connection.close()
    assert seen["status"] == "succeeded", seen
    return seen


def sqlite_figures(path: Path, rows: list[dict[str, Any]], work: Path) -> tuple[float, float]:
    """The same pipeline on the embedded default, in-process (no HTTP, no broker)."""
    import falcon.testing

    from provisioning.core import dispatch
    from provisioning.core.config import settings
    from provisioning.core.migrate import upgrade
    from provisioning.jobs import runs

    url = f"sqlite:///{work / 'bench-import.sqlite3'}"
    os.environ["PROVISIONING_DATABASE_URL"] = url
    settings.cache_clear()
    upgrade()
    floor = measure_floor(url, rows)
    from api.app import create_app

    dispatch.use_sender(lambda name, args, options: None)  # the job is run right here
    account_id, token = new_account(len(rows) + 1)
    client = falcon.testing.TestClient(create_app())
    started = time.perf_counter()
    answer = client.simulate_post(f"/v1/accounts/{account_id}/imports",
                                  params={"invite": "false"}, body=path.read_bytes(),
                                  headers={"Authorization": f"Bearer {token}",
                                           "Content-Type": "text/csv"})
    job_id = answer.json["job"]["id"]
    runs.run_job(job_id)
    while client.simulate_get(f"/v1/jobs/{job_id}", headers={
            "Authorization": f"Bearer {token}"}).json["status"] == "running":
        runs.run_job(job_id)
    return len(rows) / (time.perf_counter() - started), floor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--million-rows", type=int, default=1_000_000)
    args = parser.parse_args()
    work = work_dir()
    postgres = start_postgres(work)
    redis = start_redis(work)
    sink = start_mailsink(work)
    started: list[ManagedProcess] = []
    figures: dict[str, Any] = {"bench": "import"}
    try:
        database_url = postgres.create_database("bench_import")
        api_port = free_port()
        # the million-row file (~70 MB) is over the default 50 MB upload limit
        env = bench_env(work, database_url, redis, sink, api_port,
                        import_max_bytes=str(256 * 1024 * 1024))
        os.environ.update(env)
        from provisioning.core.config import settings
        from provisioning.core.migrate import upgrade

        settings.cache_clear()
        upgrade()
        tag = uuid.uuid4().hex[:6]
        plain = write_file(work / "plain.csv", args.rows, f"a{tag}")
        invited = write_file(work / "invited.csv", args.rows, f"b{tag}")
        rows = floor_rows(plain)
        floor = measure_floor(database_url, rows)
        print(f"floor: Core insert() of {args.rows:,} rows into PostgreSQL: {floor:,.0f} rows/s")

        worker = start_worker(work, {**os.environ, **env}, concurrency=2, beat=True)
        started.append(worker)
        web = start_web(work, {**os.environ, **env}, api_port, workers=2)
        started.append(web)

        # Warm up: each web worker and each worker process runs its first import before
        # the timed ones (their first request pays for imports and statement compiling).
        for turn in range(2):
            warm = write_file(work / "warm.csv", 200, f"w{turn}{tag}")
            account_id, token = new_account(1)
            wait_for_job(api_port, token, upload(api_port, token, account_id, warm,
                                                 invite="false"))

        account_id, token = new_account(1)
        begin = time.perf_counter()
        job = wait_for_job(api_port, token, upload(api_port, token, account_id, plain,
                                              invite="false"))
        elapsed = time.perf_counter() - begin
        assert job["summary"]["created"] == args.rows, job
        rate = args.rows / elapsed
        print(f"product, PostgreSQL, invitations off: {args.rows:,} rows, upload to succeeded "
              f"in {elapsed:.2f}s: {rate:,.0f} rows/s ({rate / floor:.2f} of the floor)")
        figures.update(rows_per_s=round(rate), floor_rows_per_s=round(floor),
                       ratio=round(rate / floor, 3))

        account_id, token = new_account(1)
        sink.clear()
        begin = time.perf_counter()
        job = wait_for_job(api_port, token, upload(api_port, token, account_id, invited))
        imported = time.perf_counter() - begin
        wait_until(lambda: sink.total() >= args.rows, timeout=3600, interval=0.5,
                   message="every invitation in the sink")
        sent = time.perf_counter() - begin
        print(f"product, invitations on: {args.rows:,} rows imported in {imported:.2f}s "
              f"({args.rows / imported:,.0f} rows/s); {args.rows:,} invitations in the sink "
              f"after {sent:.1f}s: {args.rows / sent:,.0f} emails/s")
        figures.update(invite_rows_per_s=round(args.rows / imported),
                       emails_per_s=round(args.rows / sent))
        figures["peak_rss_mb"] = round(peak_rss_mb(worker), 1)

        if args.million_rows:
            big = write_file(work / "million.csv", args.million_rows, f"c{tag}")
            account_id, token = new_account(1)
            begin = time.perf_counter()
            job = wait_for_job(api_port, token, upload(api_port, token, account_id, big,
                                                  invite="false"))
            elapsed = time.perf_counter() - begin
            assert job["summary"]["created"] == args.million_rows, job
            peak = peak_rss_mb(worker)
            print(f"product, {args.million_rows:,} rows ({big.stat().st_size / 1e6:.0f} MB), "
                  f"invitations off: {elapsed:.1f}s, {args.million_rows / elapsed:,.0f} rows/s; "
                  f"worker peak RSS {peak:.0f} MB")
            figures.update(million_rows_per_s=round(args.million_rows / elapsed),
                           peak_rss_mb=round(peak, 1))
        for process in reversed(started):
            process.stop()
        started.clear()

        sqlite_rate, sqlite_floor = sqlite_figures(plain, rows, work)
        print(f"SQLite: {args.rows:,} rows in-process, upload to succeeded: {sqlite_rate:,.0f} "
              f"rows/s; floor (Core insert) {sqlite_floor:,.0f} rows/s "
              f"({sqlite_rate / sqlite_floor:.2f} of it)")
        figures.update(sqlite_rows_per_s=round(sqlite_rate),
                       sqlite_floor_rows_per_s=round(sqlite_floor))
        print(json.dumps(figures))
    finally:
        for process in reversed(started):
            process.stop()
        sink.stop()
        redis.stop()
        postgres.stop()


if __name__ == "__main__":
    main()
