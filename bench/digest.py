"""Benchmark: the daily digest run for 100,000 people on PostgreSQL.

Starts a throwaway PostgreSQL, migrates, and seeds set-based (INSERT … SELECT over
generate_series): ``--people`` identities in the six languages, each with a 09:00 digest in
Asia/Jakarta (the worst case: one zone, everyone due at once) and three entries waiting.
Then times one ``send_digests`` run at 09:00 local (every digest row, entry update and
outbox email), and a second run at 09:05 that must find nothing left.

    python bench/digest.py [--people 100000]

Last line: {"bench": "digest", "people": …, "seconds": …, "digests_per_s": …, …}
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from sqlalchemy import text  # noqa: E402

from tests.support.bench import work_dir  # noqa: E402
from tests.support.servers import start_postgres  # noqa: E402

NINE_IN_JAKARTA = datetime(2030, 3, 4, 2, 0, tzinfo=UTC)
SEED = [
    """INSERT INTO identities (email, name, language, totp_enabled, created_at, updated_at)
       SELECT 'person' || g || '@bench.example.com', 'Person ' || g,
              (ARRAY['en', 'es', 'pt-BR', 'id', 'tr', 'ru'])[1 + g % 6], false, now(), now()
       FROM generate_series(1, :people) AS g""",
    """INSERT INTO notification_settings (identity_id, enabled, channel_in_app, channel_email,
              channel_mobile, channel_browser, channel_telegram, events, email_mode,
              digest_time, time_zone, updated_at)
       SELECT id, true, true, true, false, false, false, '{}'::jsonb, 'digest', '09:00',
              'Asia/Jakarta', now()
       FROM identities""",
    """INSERT INTO notifications (identity_id, event, text, details, in_app, digest_pending,
              created_at)
       SELECT s.identity_id, 'call', 'Incoming call from Caller ' || k, '{}'::jsonb, true,
              true, :nine - k * interval '1 hour'
       FROM notification_settings AS s CROSS JOIN generate_series(1, 3) AS k""",
    "ANALYZE",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=100_000)
    args = parser.parse_args()
    work = work_dir()
    postgres = start_postgres(work)
    try:
        os.environ.update({
            "PROVISIONING_DATABASE_URL": postgres.create_database("bench_digest"),
            "PROVISIONING_BROKER_URL": "redis://127.0.0.1:1/0",  # never reached: no sender
            "PROVISIONING_VAR_DIR": str(work),
            "PROVISIONING_SECRET_KEY": secrets.token_hex(16),
        })
        from provisioning.core import dispatch
        from provisioning.core.db import engine, session_scope
        from provisioning.core.migrate import upgrade
        from provisioning.notifications.digest import send_digests

        upgrade()
        dispatch.use_sender(lambda name, args, options: None)  # the emails stay queued
        started = time.perf_counter()
        with engine().begin() as connection:
            for statement in SEED:
                connection.execute(text(statement), {"people": args.people,
                                                     "nine": NINE_IN_JAKARTA})
        seeded = time.perf_counter() - started
        print(f"seeded {args.people:,} people with 3 waiting entries each in {seeded:.1f}s")

        started = time.perf_counter()
        import cProfile
        profiler = cProfile.Profile()
        profiler.enable()
        run = send_digests(now=NINE_IN_JAKARTA)
        profiler.disable()
        profiler.dump_stats("/tmp/digest.prof")
        elapsed = time.perf_counter() - started
        started = time.perf_counter()
        again = send_digests(now=NINE_IN_JAKARTA.replace(minute=5))
        idle = time.perf_counter() - started
        with session_scope() as session:
            queued = session.execute(text(
                "SELECT count(*) FROM outbox_emails WHERE template = 'digest'")).scalar_one()
        assert run.digests == queued == args.people and again.digests == 0, (run, again, queued)
        print(f"digest run: {run.digests:,} digests (emails queued, entries let go) in "
              f"{elapsed:.1f}s: {run.digests / elapsed:,.0f} digests/s; the next run, with "
              f"nothing due, {idle * 1000:.0f} ms")
        print(json.dumps({"bench": "digest", "people": args.people, "seconds": round(elapsed, 2),
                          "digests_per_s": round(run.digests / elapsed, 1),
                          "idle_run_ms": round(idle * 1000, 1)}))
    finally:
        postgres.stop()


if __name__ == "__main__":
    main()
