"""The inbox claim's cost against the size of the history: `EXPLAIN (ANALYZE)` of the claim's
candidate query with 500 due events, first beside no processed row, then beside 1,000,000.

The claim must cost the same however many webhooks a shop has received: it reads due rows through
the partial index on unprocessed events, never past the processed ones.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres .venv/bin/python bench/explain_claim.py

A scratch database is created on DATABASE_URL's server, migrated, filled and dropped.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
from sqlalchemy.dialects import postgresql

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.devdb import with_database  # noqa: E402
from app.payments.repository import due_events_query  # noqa: E402

DUE = 500
HISTORIES = (0, 1_000_000)


def claim_candidates_sql(now: datetime) -> str:
    """The statement `payments.repository.claim_events` starts with, with `now` inlined."""
    query = due_events_query(now, limit=64)
    return str(query.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}))


async def explain(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        for processed in HISTORIES:
            await conn.execute("TRUNCATE provider_events")
            await conn.execute(
                """INSERT INTO provider_events (provider, delivery_id, provider_session_id, raw_body,
                       payload, attempts, processed_at, outcome)
                   SELECT 'fintecture', 'done-' || i, 'paid-' || i, '\\x00', '{}', 1, now(), 'applied'
                   FROM generate_series(1, $1::int) AS i""",
                processed,
            )
            await conn.execute(
                """INSERT INTO provider_events (provider, delivery_id, provider_session_id, raw_body,
                       payload, attempts)
                   SELECT 'fintecture', 'due-' || i, 'open-' || i, '\\x00', '{}', 0
                   FROM generate_series(1, $1::int) AS i""",
                DUE,
            )
            await conn.execute("VACUUM ANALYZE provider_events")
            sql = claim_candidates_sql(datetime.now(UTC) + timedelta(minutes=1))  # every row is due
            for _ in range(3):  # the last of three, with warm caches
                plan = await conn.fetch("EXPLAIN (ANALYZE, BUFFERS) " + sql)
            print(f"--- {processed:,} processed events, {DUE} due")
            print("\n".join(row[0] for row in plan))
    finally:
        await conn.close()


async def run(server: str) -> None:
    name = f"checkout_explain_{secrets.token_hex(3)}"
    admin = await asyncpg.connect(server)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        url = with_database(server, name)
        env = {**os.environ, "DATABASE_URL": url}
        migrate = [sys.executable, "-m", "alembic", "upgrade", "head"]
        subprocess.run(migrate, cwd=ROOT, env=env, check=True, capture_output=True)  # noqa: ASYNC221
        await explain(url)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def main() -> None:
    asyncio.run(run(os.environ["DATABASE_URL"]))  # postgresql://user@host:port/any-database


if __name__ == "__main__":
    main()
