"""What `checkout serve` checks before it listens: the settings, the database, its migrations, and
whether the pools of all its processes fit in the server's `max_connections`.

A service that starts without its database answers 503s and logs a failing worker every few
seconds; one that starts on an old schema fails on its first query. Both are better said once, at
start-up, with the reason, and a non-zero exit.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from app.config import Settings
from app.db import database_error_summary
from app.migrations_info import current_revision, head_revision

# Connections PostgreSQL keeps for superusers, plus room for an operator's psql and migrations.
RESERVED_CONNECTIONS = 5


@dataclass
class DatabaseReport:
    reachable: bool = False
    error: str | None = None
    migration: str | None = None
    expected_migration: str | None = None
    max_connections: int | None = None
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _redacted(url: str) -> str:
    """The URL without its password, to say where we looked."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


async def check_database(settings: Settings, processes: int = 1) -> DatabaseReport:
    """One connection: reachable, migrated to head, room for `processes` pools."""
    from sqlalchemy import text

    from app.db import create_engine

    report = DatabaseReport(expected_migration=head_revision())
    engine = create_engine(
        settings.database_url, pool_size=1, connect_timeout=settings.database_connect_timeout_seconds
    )
    try:
        async with engine.connect() as conn:
            report.reachable = True
            report.migration = await current_revision(conn)
            report.max_connections = int((await conn.execute(text("SHOW max_connections"))).scalar_one())
    except Exception as exc:  # any failure to connect or read is the same answer: not usable
        if not report.reachable:
            report.error = database_error_summary(exc)
            where = _redacted(settings.database_url)
            report.problems.append(f"the database at {where} is unreachable: {report.error}")
            return report
        raise
    finally:
        await engine.dispose()
    if report.migration != report.expected_migration:
        report.problems.append(
            f"the database is at migration {report.migration or 'none'}, this version needs "
            f"{report.expected_migration}: run `checkout migrate` (or serve with --migrate)"
        )
    wanted = processes * settings.database_pool_size
    if report.max_connections is not None and wanted > report.max_connections - RESERVED_CONNECTIONS:
        report.warnings.append(
            f"{processes} process(es) x DATABASE_POOL_SIZE={settings.database_pool_size} = {wanted} "
            f"connections, but the server allows max_connections={report.max_connections} "
            f"(keep {RESERVED_CONNECTIONS} spare): lower the pool size or raise max_connections"
        )
    return report


async def wait_for_database(settings: Settings, processes: int, wait_seconds: float) -> DatabaseReport:
    """Check until the database is reachable and migrated, or `wait_seconds` have passed."""
    deadline = time.monotonic() + wait_seconds
    while True:
        report = await check_database(settings, processes)
        if not report.problems or time.monotonic() >= deadline:
            return report
        await asyncio.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
