"""Engine, sessionmaker and the per-request session.

Services take a session and flush; the request boundary commits. The request dependency runs with
`scope="function"`, so its commit happens when the endpoint returns and before the response is
sent: a client that got a 2xx can rely on the next request seeing the write. Flows that call a
provider take the sessionmaker instead and open short transactions around the call.

When the database is out of reach, nothing waits long: connecting gives up after a short timeout,
a request waits a short while for a pooled connection, and both end in an exception that
`is_database_unavailable` or `is_pool_exhausted` recognises (the API answers them with 503s, the
workers back off). Connections are not pinged on checkout: one the server closed (a restart) is
replaced at checkout at no cost, and one that fails mid-request is invalidated with the rest of the
pool, so the next request reconnects.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.util import greenlet_spawn

# Server errors that say the server is going away or refuses connections for now, not that a
# statement was wrong: shutting down, crashed, starting up, too many connections. Class 08
# (connection exceptions) is matched by prefix.
_UNAVAILABLE_SQLSTATES = frozenset({"57P01", "57P02", "57P03", "53300"})


class DatabaseUnavailable(Exception):
    """Connecting to the database failed or timed out."""


def create_engine(
    database_url: str,
    *,
    pool_size: int = 20,
    pool_timeout: float = 3.0,
    connect_timeout: float = 1.5,
) -> AsyncEngine:
    engine = create_async_engine(
        database_url,
        pool_size=pool_size,
        # A fixed pool: connections that overflow are closed as soon as they are returned, so a
        # burst would pay a new connection (and its statement cache) per request. Past the pool,
        # a request waits up to `pool_timeout` for a connection, then gets a 503.
        max_overflow=0,
        pool_timeout=pool_timeout,
        # No round trip per checkout: see `_replace_closed` and the module's docstring.
        pool_pre_ping=False,
        pool_recycle=1800,
        # Statement errors and their log lines never carry the values bound (customers' data).
        hide_parameters=True,
        connect_args={"timeout": connect_timeout},
    )
    event.listen(engine.sync_engine, "do_connect", _connect)
    event.listen(engine.sync_engine.pool, "checkout", _replace_closed)
    return engine


async def fill_pool(engine: AsyncEngine, size: int) -> int:
    """Open `size` of the pool's connections at once and hand them back to it; how many opened.

    A pool otherwise opens its connections on demand: after a start, under the first burst of
    requests. Opening one (connection, authentication, the driver's set-up) takes a few milliseconds
    of the process's own time, and a burst makes it open all of them while requests queue behind:
    in the benchmark, a process's first webhooks after its start had a p99 about twice the
    hand-written floor's, and about 1.2 times with its pool open (bench/README.md). Best effort:
    what fails to open now (the database is down, `max_connections` is reached) is opened on
    demand later, as before.
    """
    opened = await asyncio.gather(*(engine.connect().start() for _ in range(size)), return_exceptions=True)
    connections = [conn for conn in opened if not isinstance(conn, BaseException)]
    for conn in connections:
        await conn.close()  # back to the pool, open
    return len(connections)


def _connect(dialect: Any, _record: Any, cargs: Any, cparams: Any) -> Any:
    # The driver raises its own types here (OSError, TimeoutError, asyncpg's errors), unwrapped by
    # SQLAlchemy: give every failure to connect one type.
    try:
        return dialect.connect(*cargs, **cparams)
    except Exception as exc:
        raise DatabaseUnavailable(f"cannot connect to the database ({type(exc).__name__}: {exc})") from exc


def _replace_closed(_dbapi_connection: Any, record: Any, _proxy: Any) -> None:
    # The driver notices a server that closed the connection (a restart) without a round trip;
    # DisconnectionError makes the pool open a fresh connection in its place.
    driver = record.driver_connection
    if driver is not None and driver.is_closed():
        raise sa_exc.DisconnectionError("the server closed this pooled connection")


def database_error_summary(exc: BaseException) -> str:
    """What went wrong, for a log line: the driver's message, never the statement or its values."""
    cause = exc.orig if isinstance(exc, sa_exc.DBAPIError) and exc.orig is not None else exc
    return f"{type(cause).__name__}: {cause}"[:300]


def is_pool_exhausted(exc: BaseException) -> bool:
    """Every pooled connection stayed in use for the whole pool timeout."""
    return isinstance(exc, sa_exc.TimeoutError)


def is_database_unavailable(exc: BaseException) -> bool:
    """The database cannot be reached or lost the connection, as opposed to refusing a statement."""
    if isinstance(exc, DatabaseUnavailable):
        return True
    if isinstance(exc, sa_exc.DBAPIError):
        if exc.connection_invalidated:
            return True
        sqlstate = getattr(exc.orig, "sqlstate", None) or ""
        return sqlstate.startswith("08") or sqlstate in _UNAVAILABLE_SQLSTATES
    # Raised by the driver itself, on a path that uses its connection directly.
    return type(exc).__module__.startswith("asyncpg") and _is_driver_disconnect(exc)


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=True)


@asynccontextmanager
async def transaction(sessionmaker: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """One short unit of work: commit on success, roll back on error."""
    async with sessionmaker() as session, session.begin():
        yield session


def _is_driver_disconnect(exc: BaseException) -> bool:
    """A driver error that means the connection or the server is gone, not a refused statement:
    what a statement run on the driver connection itself raises when the server goes away."""
    import asyncpg

    if isinstance(
        exc,
        OSError
        | TimeoutError
        | EOFError
        | asyncpg.InterfaceError
        | asyncpg.InternalClientError
        | asyncpg.ConnectionDoesNotExistError,
    ):
        return True
    sqlstate = getattr(exc, "sqlstate", None) or ""
    return sqlstate.startswith("08") or sqlstate in _UNAVAILABLE_SQLSTATES


def _checkout_awaits_nothing(pool: Any) -> bool:
    """Whether the pool's next check-out would hand over a ready connection without awaiting: one
    is checked in, and SQLAlchemy's check-out would neither reconnect it (never opened, due for
    recycling, invalidated with the pool or on its own) nor replace it (`_replace_closed`), and
    the pool pings nothing on check-out.

    Read off SQLAlchemy's pool internals (2.1: `_ConnectionRecord.get_connection`, the async queue
    the pool keeps its records in); tests/integration/test_driver_connection.py checks each case
    and fails if an upgrade moves them. Any doubt answers False, and the check-out goes through
    SQLAlchemy's greenlet as before."""
    try:
        queue = pool._pool
        waiting = queue._queue._queue  # the asyncio.Queue's deque of checked-in records
        if not waiting:
            return False
        record = waiting[-1] if queue.use_lifo else waiting[0]  # the one the next get takes
        driver = record.driver_connection
        started = record.starttime
        recycle = pool._recycle
        return (
            driver is not None
            and not pool._pre_ping
            and not driver.is_closed()
            # A second's margin: the check-out reads the clock again.
            and (recycle < 0 or time.time() - started < recycle - 1)
            and pool._invalidate_time <= started
            and record._soft_invalidate_time <= started
        )
    except AttributeError:
        return False


class driver_connection:
    """The pool's asyncpg connection itself, for a hot path whose work is one statement: it runs in
    autocommit (no BEGIN/COMMIT round trips) and skips the ORM and Core machinery. Connections come
    from, and go back to, the same pool as every session's. A lost connection is discarded and
    reported as DatabaseUnavailable, like a session's; so is one whose statement was cancelled
    midway, since its state is then unknown. (A class rather than a generator-based context
    manager: it is entered once per webhook.)"""

    __slots__ = ("_engine", "_fairy")

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._fairy: Any = None

    async def __aenter__(self) -> Any:
        sync_engine = self._engine.sync_engine
        if _checkout_awaits_nothing(sync_engine.pool):
            # Taken right here: SQLAlchemy's async API would start a greenlet for a check-out
            # that awaits nothing (see `__aexit__` for what a greenlet costs).
            self._fairy = sync_engine.raw_connection()
        else:
            self._fairy = await self._engine.raw_connection()
        return self._fairy.driver_connection

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, _tb: Any) -> None:
        fairy = self._fairy
        # A connection that closed under the statement is lost, whatever the driver raised.
        lost = exc is not None and (_is_driver_disconnect(exc) or fairy.driver_connection.is_closed())
        if not lost and not isinstance(exc, asyncio.CancelledError):
            # Checked in right here, without the greenlet SQLAlchemy's async API would start for
            # it (each costs a new interpreter stack: an mmap, page faults and an munmap). The
            # check-in's reset rolls back only a transaction SQLAlchemy's adapter began, and none
            # was: statements here go to the driver itself. Nothing in it awaits.
            fairy.close()
            return
        try:
            await greenlet_spawn(fairy.invalidate, exc if isinstance(exc, Exception) else None)
        finally:
            # Invalidating awaits the driver (closing the connection): SQLAlchemy's greenlet context.
            await greenlet_spawn(fairy.close)
        if lost:
            raise DatabaseUnavailable(f"lost the database connection ({exc_type.__name__}: {exc})") from exc
