"""Structured logs (JSON lines) via structlog; secrets never go in.

Query strings carry secrets (the payer's return has our `state` token, and each provider's ids),
so neither the server's access log nor the HTTP client's request log may print them.
"""

from __future__ import annotations

import logging
from urllib.parse import parse_qsl

import structlog


def without_query_values(path: str) -> str:
    """`/callback?state=...&session_id=...` -> `/callback?state&session_id`: the keys say which
    kind of request it was; the values are the payer's."""
    path, sep, query = path.partition("?")
    if not sep:
        return path
    keys = [key for key, _ in parse_qsl(query, keep_blank_values=True)]
    return f"{path}?{'&'.join(keys)}" if keys else path


class AccessLogQueryFilter(logging.Filter):
    """Uvicorn's access log line with the query's values left out (its arguments are the client,
    the method, the path with the query, the HTTP version and the status)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) == 5 and isinstance(args[2], str):
            record.args = (args[0], args[1], without_query_values(args[2]), args[3], args[4])
        return True


def configure(level: str = "INFO") -> None:
    logging.basicConfig(format="%(message)s", level=level.upper())
    # A filter on the logger itself survives the server's logging configuration (dictConfig
    # replaces handlers, not filters).
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, AccessLogQueryFilter) for f in access.filters):
        access.addFilter(AccessLogQueryFilter())
    # httpx logs every request's full URL at INFO, and provider requests carry our state token.
    logging.getLogger("httpx").setLevel(max(logging.WARNING, logging.getLevelName(level.upper())))
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            # A traceback goes into the line's "exception" field: one JSON line per event.
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        cache_logger_on_first_use=True,
    )


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    return structlog.get_logger(name)  # type: ignore[no-any-return]
