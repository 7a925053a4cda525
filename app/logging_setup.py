"""Structured logs: every line one JSON object on stderr, secrets never in it.

structlog's own lines and the standard library's (uvicorn, httpx, alembic, asyncio...) go through
one handler on the root logger whose formatter renders both as JSON with `timestamp`, `level`,
`logger` and `event`. Values bound in structlog's context variables (a request's `request_id`, its
`order_id`) are on every line logged while they are bound, the standard library's included.
An exception is logged as `exc_type`, `exc_message` and its traceback in `exception`.

Query strings carry secrets (the payer's return has our `state` token, and each provider's ids), so
neither the access log nor the HTTP client's request lines print their values.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable
from typing import Any, TextIO
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import structlog
from sqlalchemy import event as sa_event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session, SessionTransaction
from structlog.typing import EventDict, Processor, WrappedLogger

_LOGGERS_OF_THE_SERVER = ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi")


def without_query_values(path: str) -> str:
    """`/callback?state=...&session_id=...` -> `/callback?state&session_id`: the keys say which
    kind of request it was; the values are the payer's."""
    path, sep, query = path.partition("?")
    if not sep:
        return path
    keys = [key for key, _ in parse_qsl(query, keep_blank_values=True)]
    return f"{path}?{'&'.join(keys)}" if keys else path


def url_without_query_values(url: str) -> str:
    """A full URL with its query's values (and any user:password) left out."""
    parts = urlsplit(url)
    netloc = parts.netloc.rpartition("@")[2]
    query = without_query_values(f"?{parts.query}")[1:] if parts.query else ""
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


class AccessLogQueryFilter(logging.Filter):
    """Uvicorn's access log line with the query's values left out (its arguments are the client,
    the method, the path with the query, the HTTP version and the status). `checkout serve` logs
    its own access line (app/request_id.py); this covers the server run any other way."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) == 5 and isinstance(args[2], str):
            record.args = (args[0], args[1], without_query_values(args[2]), args[3], args[4])
        return True


class HttpClientQueryFilter(logging.Filter):
    """httpx's request line (`HTTP Request: GET <url> "HTTP/1.1 200 OK"`) with the URL's query
    values left out: a provider's URL can carry our state token."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 2:
            record.args = (args[0], url_without_query_values(str(args[1])), *args[2:])
        return True


def _exception_fields(logger: WrappedLogger, method: str, event_dict: EventDict) -> EventDict:
    """`exc_info` (an exception, a tuple, or True inside an `except`) -> `exc_type`, `exc_message`
    and the traceback as text in `exception`; the key itself never reaches the line."""
    exc_info = event_dict.get("exc_info")
    if exc_info is not None and exc_info is not False:
        exc: BaseException | None
        if isinstance(exc_info, BaseException):
            exc = exc_info
        elif isinstance(exc_info, tuple):
            exc = exc_info[1]
        else:
            exc = sys.exc_info()[1]
        if exc is not None:
            event_dict["exc_type"] = type(exc).__qualname__
            event_dict["exc_message"] = str(exc)
    return structlog.processors.format_exc_info(logger, method, event_dict)


def _record_level(logger: WrappedLogger, method: str, event_dict: EventDict) -> EventDict:
    """`level` of a standard library record (structlog's own lines have theirs already)."""
    event_dict["level"] = event_dict["_record"].levelname.lower()
    return event_dict


def _logger_name(logger: WrappedLogger, method: str, event_dict: EventDict) -> EventDict:
    record = event_dict.get("_record")
    if record is not None:
        event_dict.setdefault("logger", record.name)
    return event_dict


_TIMESTAMPER = structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp")

# What the standard library's records get before rendering; structlog's get the same in its own
# chain (configure()).
_FOREIGN_PRE_CHAIN: list[Processor] = [
    structlog.contextvars.merge_contextvars,
    _record_level,
    _TIMESTAMPER,
]


def _structlog_logger_name(logger: WrappedLogger, method: str, event_dict: EventDict) -> EventDict:
    event_dict["logger"] = logger.name
    return event_dict


# One lock for every line written to stderr, whoever writes it: lines never interleave.
_WRITE_LOCK = threading.RLock()


class _LineWriter:
    """structlog's logger: writes its rendered line under the handlers' lock. Going through the
    standard library's Logger instead (caller lookup, record, formatter) costs twice as much, on a
    line logged per request."""

    def __init__(self, name: str = "") -> None:
        self.name = name

    def msg(self, line: str) -> None:
        with _WRITE_LOCK:
            stream = sys.stderr
            stream.write(line + "\n")
            stream.flush()

    debug = info = warning = error = critical = exception = log = msg


class JsonFormatter(structlog.stdlib.ProcessorFormatter):
    """Renders the standard library's records (and structlog's, unless rendered already) as one
    JSON object per line.

    Takes the arguments `logging.Formatter` takes (and ignores them), so fileConfig (alembic.ini)
    and dictConfig (uvicorn's log_config) can build it by name."""

    def __init__(
        self, fmt: str | None = None, datefmt: str | None = None, style: str = "%", *_: Any, **__: Any
    ) -> None:
        super().__init__(
            processors=[
                _logger_name,
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                _exception_fields,
                structlog.processors.JSONRenderer(),
            ],
            foreign_pre_chain=_FOREIGN_PRE_CHAIN,
        )


class StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A stream handler writing to whatever `sys.stderr` is when a line is written (a test's
    capture, replaced between tests, is never written to after it was closed)."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(JsonFormatter())

    def createLock(self) -> None:
        self.lock = _WRITE_LOCK

    @property  # type: ignore[override]
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _: TextIO) -> None:
        pass


def _level_number(level: str) -> int:
    number = logging.getLevelName(level.upper())
    return number if isinstance(number, int) else logging.INFO


def server_log_config(level: str = "INFO") -> dict[str, Any]:
    """uvicorn's `log_config`: its loggers write JSON lines through our handler (uvicorn's own
    would install plain-text formatters). Applied in each server process before the app loads, so
    a worker process's first lines are JSON too."""
    handler = {"()": "app.logging_setup.StderrHandler"}
    server_logger = {"handlers": ["json"], "level": level.upper(), "propagate": False}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {"json": handler},
        "loggers": dict.fromkeys(_LOGGERS_OF_THE_SERVER, server_logger),
    }


def configure(level: str = "INFO") -> None:
    """Idempotent: one JSON handler on the root logger, structlog rendering through it."""
    number = _level_number(level)
    root = logging.getLogger()
    if not any(isinstance(h, StderrHandler) for h in root.handlers):
        root.addHandler(StderrHandler())
    root.setLevel(number)
    logging.captureWarnings(True)  # a Python warning is a JSON line too, not plain text on stderr
    # A filter on the logger itself survives the server's logging configuration (dictConfig
    # replaces handlers, not filters).
    _add_filter("uvicorn.access", AccessLogQueryFilter)
    _add_filter("httpx", HttpClientQueryFilter)
    # httpcore's DEBUG lines name every header (Authorization included): never below INFO.
    logging.getLogger("httpcore").setLevel(max(logging.INFO, number))
    # One line per plug-in each time alembic loads its scripts (the service checks the head).
    logging.getLogger("alembic.runtime.plugins").setLevel(max(logging.WARNING, number))
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            _TIMESTAMPER,
            _structlog_logger_name,
            _exception_fields,
            structlog.processors.JSONRenderer(),
        ],
        logger_factory=_LineWriter,
        wrapper_class=structlog.make_filtering_bound_logger(number),
        cache_logger_on_first_use=True,
    )


def _add_filter(name: str, kind: Callable[[], logging.Filter]) -> None:
    logger = logging.getLogger(name)
    if not any(type(f) is kind for f in logger.filters):
        logger.addFilter(kind())


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    return structlog.get_logger(name)  # type: ignore[no-any-return]


# --- lines that tell of what a transaction wrote, once it is committed -----------------------------

_AFTER_COMMIT = "logging_setup.after_commit"


def log_after_commit(db: AsyncSession, log: structlog.stdlib.BoundLogger, event: str, **fields: Any) -> None:
    """Log `event` when `db`'s transaction commits, never if it rolls back: a line saying an
    order is paid is true once it is written. Logged in the committing request's context (its
    request id)."""
    db.info.setdefault(_AFTER_COMMIT, []).append((log, event, fields))


@sa_event.listens_for(Session, "after_commit")
def _log_committed(session: Session) -> None:
    for log, event, fields in session.info.pop(_AFTER_COMMIT, ()):
        log.info(event, **fields)


@sa_event.listens_for(Session, "after_transaction_end")
def _forget_uncommitted(session: Session, transaction: SessionTransaction) -> None:
    # After a commit the list is gone already; after a rollback of the whole transaction, nothing
    # it recorded happened.
    if transaction.parent is None:
        session.info.pop(_AFTER_COMMIT, None)
