"""Every line is one JSON object (structlog's and the standard library's alike, exceptions with
their type, message and traceback), and logs never hold a query string's values: the access log
keeps the keys only (the payer's return carries our state token), and so do the HTTP client's
request lines, whose URLs carry it too."""

from __future__ import annotations

import json
import logging
import logging.config
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import structlog
import uvicorn

from app import logging_setup, request_id
from app.logging_setup import AccessLogQueryFilter, url_without_query_values, without_query_values
from app.server import server_config


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


@pytest.fixture
def stderr_lines(capsys: pytest.CaptureFixture[str]) -> Iterator[Any]:
    """The JSON lines written to stderr, each parsed (fails on any line that is not JSON)."""
    logging_setup.configure("INFO")
    structlog.configure(cache_logger_on_first_use=False)  # this test's loggers see this config
    logging.config.dictConfig(logging_setup.server_log_config())  # as `checkout serve` starts

    def read() -> list[dict[str, Any]]:
        return [json.loads(line) for line in capsys.readouterr().err.splitlines()]

    yield read
    structlog.contextvars.clear_contextvars()


def test_structlog_and_stdlib_lines_are_json_with_the_context(stderr_lines: Any) -> None:
    structlog.contextvars.bind_contextvars(request_id="r-1")
    logging_setup.get_logger("app.test").info("order_paid", order_id="o-1")
    logging.getLogger("uvicorn.error").warning("Invalid HTTP request received %s", "twice")
    first, second = stderr_lines()
    assert {k: first[k] for k in ("event", "order_id", "request_id", "level", "logger")} == {
        "event": "order_paid",
        "order_id": "o-1",
        "request_id": "r-1",
        "level": "info",
        "logger": "app.test",
    }
    assert first["timestamp"].endswith("Z")
    assert second["event"] == "Invalid HTTP request received twice"
    assert (second["level"], second["logger"], second["request_id"]) == ("warning", "uvicorn.error", "r-1")


def test_exceptions_carry_their_type_message_and_traceback(stderr_lines: Any) -> None:
    log = logging_setup.get_logger("app.test")
    try:
        raise ValueError("the amount is wrong")
    except ValueError as exc:
        log.exception("failed_in_except")  # exc_info=True
        log.error("failed_with_exc", exc_info=exc)
        logging.getLogger("alembic").exception("stdlib failed")
    log.error("failed_with_instance", exc_info=KeyError("k"))
    lines = stderr_lines()
    assert [line["event"] for line in lines] == [
        "failed_in_except",
        "failed_with_exc",
        "stdlib failed",
        "failed_with_instance",
    ]
    for line in lines[:3]:
        assert (line["exc_type"], line["exc_message"]) == ("ValueError", "the amount is wrong")
        assert line["exception"].startswith("Traceback") and "the amount is wrong" in line["exception"]
        assert "exc_info" not in line
    assert (lines[3]["exc_type"], lines[3]["exc_message"]) == ("KeyError", "'k'")


def test_the_servers_lines_stay_json_through_its_own_logging_configuration(stderr_lines: Any) -> None:
    # uvicorn applies its log_config when its Config is made: its default one installs plain-text
    # formatters, server_config gives it ours.
    uvicorn.Config("app.main:create_app", factory=True, log_level="info")
    server = logging.getLogger("uvicorn")
    assert not any(isinstance(h.formatter, logging_setup.JsonFormatter) for h in server.handlers)
    config = server_config("app.main:create_app", factory=True, log_level="info")
    assert config.access_log is False  # the app logs its own access line, with the request id
    assert [type(h.formatter) for h in server.handlers] == [logging_setup.JsonFormatter]
    logging.getLogger("uvicorn.error").info("Started server process [%d]", 42)
    (line,) = stderr_lines()
    assert (line["event"], line["logger"]) == ("Started server process [42]", "uvicorn.error")


def test_the_http_clients_request_lines_keep_no_query_values(stderr_lines: Any) -> None:
    assert logging.getLogger("httpx").isEnabledFor(logging.INFO)
    assert not logging.getLogger("httpcore").isEnabledFor(logging.DEBUG)  # headers, tokens
    url = httpx.URL("https://user:pw@api.test/pis/v2/connect?state=s3cr3t&redirect_uri=https://x")
    # The call httpx makes for each response.
    logging.getLogger("httpx").info('HTTP Request: %s %s "%s %d %s"', "POST", url, "HTTP/1.1", 200, "OK")
    (line,) = stderr_lines()
    assert (
        line["event"]
        == 'HTTP Request: POST https://api.test/pis/v2/connect?state&redirect_uri "HTTP/1.1 200 OK"'
    )
    assert url_without_query_values("https://api.test/p") == "https://api.test/p"


@pytest.mark.parametrize("value", ["abc", "0f8fad5b-d9cb-469f-a165-70867728950e", "a.b:c_d-e", "x" * 128])
def test_a_plain_short_request_id_is_kept(value: str) -> None:
    assert request_id.accepted(value.encode()) == value


@pytest.mark.parametrize("value", [b"", b"x" * 129, b"a b", b"a\nb", b"<id>", "é".encode(), b"a/b", b"a=b"])
def test_any_other_request_id_is_refused(value: bytes) -> None:
    assert request_id.accepted(value) is None
