"""Which driver errors mean "the database is gone" (a 503 and a retry) rather than a refused
statement, when a hot path uses the driver connection directly."""

from __future__ import annotations

import asyncpg

from app.db import is_database_unavailable


def test_the_driver_losing_the_server_is_unavailable() -> None:
    assert is_database_unavailable(asyncpg.ConnectionDoesNotExistError("connection was closed"))
    assert is_database_unavailable(asyncpg.AdminShutdownError("terminating connection"))  # 57P01
    assert is_database_unavailable(asyncpg.CannotConnectNowError("the database system is shutting down"))
    assert is_database_unavailable(asyncpg.InterfaceError("connection is closed"))
    assert is_database_unavailable(asyncpg.InternalClientError("unexpected protocol state"))


def test_a_refused_statement_is_not() -> None:
    assert not is_database_unavailable(asyncpg.UniqueViolationError("duplicate key"))
    assert not is_database_unavailable(asyncpg.QueryCanceledError("canceling statement"))
    assert not is_database_unavailable(ValueError("not a database error"))
