"""Logs never hold a query string's values: the access log keeps the keys only (the payer's return
carries our state token), and the HTTP client's per-request lines, whose URLs carry it too, are off."""

from __future__ import annotations

import logging

import pytest
import uvicorn

from app import logging_setup
from app.logging_setup import AccessLogQueryFilter, without_query_values


@pytest.mark.parametrize(
    ("path", "logged"),
    [
        ("/callback?state=s3cr3t&session_id=abc&customer_id=42", "/callback?state&session_id&customer_id"),
        ("/orders?status=paid&cursor=", "/orders?status&cursor"),
        ("/callback?state=a%3Db&state=c", "/callback?state&state"),
        ("/products", "/products"),
        ("/products?", "/products"),
    ],
)
def test_query_values_are_left_out(path: str, logged: str) -> None:
    assert without_query_values(path) == logged


def _access_line(logger: logging.Logger, path: str) -> str:
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep()
    logger.addHandler(handler)
    try:
        # The call uvicorn's HTTP protocols make for each response.
        logger.info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:5000", "GET", path, "1.1", 303)
    finally:
        logger.removeHandler(handler)
    return records[0].getMessage()


def test_the_access_log_keeps_the_filter_through_the_servers_logging_configuration() -> None:
    logging_setup.configure("INFO")
    # uvicorn applies its own logging configuration when it is configured, after the app is built.
    uvicorn.Config("app.main:create_app", log_level="info", factory=True).configure_logging()
    access = logging.getLogger("uvicorn.access")
    assert sum(isinstance(f, AccessLogQueryFilter) for f in access.filters) == 1
    line = _access_line(access, "/callback?state=s3cr3t&session_id=abc")
    assert line == '127.0.0.1:5000 - "GET /callback?state&session_id HTTP/1.1" 303'
    logging_setup.configure("INFO")  # configuring twice adds no second filter
    assert sum(isinstance(f, AccessLogQueryFilter) for f in access.filters) == 1


def test_the_http_clients_request_lines_are_off() -> None:
    logging_setup.configure("INFO")
    assert not logging.getLogger("httpx").isEnabledFor(logging.INFO)
    assert logging.getLogger("httpx").isEnabledFor(logging.WARNING)
