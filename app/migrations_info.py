"""Where the Alembic migrations live, and which revision is head."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


def alembic_config(database_url: str | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if database_url:
        config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


@cache
def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


async def current_revision(conn: AsyncConnection) -> str | None:
    """The revision the database is at; None before the first migration."""
    if (await conn.execute(text("SELECT to_regclass('alembic_version')"))).scalar() is None:
        return None
    revision = (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar()
    return str(revision) if revision is not None else None
