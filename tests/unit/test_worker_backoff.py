"""A background loop through a database outage: one line when it starts, one when it ends, and
longer waits between attempts meanwhile; a bug is logged every time, with its traceback."""

from __future__ import annotations

import pytest

from app.db import DatabaseUnavailable
from app.payments import workers
from app.payments.workers import MAX_FAILURE_BACKOFF_SECONDS, FailureBackoff
from tests.support.logs import capture_module_logs


def test_an_outage_is_logged_once_when_it_starts_and_once_when_it_ends(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    backoff = FailureBackoff("inbox_worker", base=0.5)
    down = DatabaseUnavailable("cannot connect to the database (ConnectionRefusedError: refused)")
    with capture_module_logs(monkeypatch, workers) as logs:
        waits = [backoff.failed(down) for _ in range(8)]
        backoff.succeeded()
        backoff.succeeded()
    assert waits == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0, 10.0]
    assert max(waits) == MAX_FAILURE_BACKOFF_SECONDS
    assert [(entry["event"], entry["log_level"]) for entry in logs] == [
        ("inbox_worker_database_unavailable", "warning"),
        ("inbox_worker_recovered", "info"),
    ]
    assert "ConnectionRefusedError" in logs[0]["error"]
    assert logs[1]["failed_passes"] == 8
    assert backoff.failed(down) == 0.5  # a new outage starts over


def test_a_bug_is_logged_each_time_with_its_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    backoff = FailureBackoff("sweeper", base=1.0)
    with capture_module_logs(monkeypatch, workers) as logs:
        waits = [backoff.failed(KeyError("missing")) for _ in range(3)]
    assert waits == [1.0, 2.0, 4.0]
    assert [entry["event"] for entry in logs] == ["sweeper_failed"] * 3
    assert all(isinstance(entry["exc_info"], KeyError) for entry in logs)
