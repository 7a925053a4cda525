"""Every line the service writes is one JSON object, and one request's lines share its request id.

The service runs as deployed (`checkout serve` in a child process, its stdout and stderr in one
file); a payer pays an order through the provider simulator, whose webhook reaches the service.
`checkout migrate` writes JSON only too. A client's X-Request-ID is kept when it is plain and short,
replaced otherwise, and every answer carries it, errors included.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from app.devdb import with_database
from tests.conftest import _admin
from tests.e2e.conftest import Stack
from tests.support.process_stack import ProcessStack, process_stack
from tests.support.settings_env import every_env_name

ROOT = Path(__file__).resolve().parents[2]
HEX_ID = 32  # a request id the service makes: 32 hex digits


def parse_lines(output: str) -> list[dict[str, Any]]:
    """Every line as a JSON object with the fields every line has; fails on the first that is not."""
    lines = []
    for number, line in enumerate(output.splitlines(), 1):
        try:
            entry = json.loads(line)
        except ValueError:
            pytest.fail(f"line {number} is not JSON: {line!r}")
        assert isinstance(entry, dict), line
        assert {"timestamp", "level", "logger", "event"} <= entry.keys(), line
        assert "exc_info" not in entry, line
        lines.append(entry)
    return lines


async def _wait_paid(stack: ProcessStack, order: dict[str, Any], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        response = await stack.http.get(
            f"{stack.url}/orders/{order['id']}", headers={"Authorization": f"Bearer {order['access_token']}"}
        )
        assert response.status_code == 200, response.text
        if response.json()["status"] == "paid":
            return
        assert time.monotonic() < deadline, response.json()["status"]
        await asyncio.sleep(0.1)


async def test_a_paid_order_in_the_log_of_the_service_as_deployed(
    database_url: str, clean_database: str
) -> None:
    async with process_stack(database_url, INBOX_POLL_SECONDS="0.1") as stack:
        await stack.put_product()
        placed = await stack.post_order()
        assert placed.status_code == 201, placed.text
        order = placed.json()
        order_request = placed.headers["x-request-id"]
        assert len(order_request) == HEX_ID
        opened = await stack.open_session(order)
        assert opened.status_code == 201, opened.text
        session = opened.json()
        # The payer confirms at the provider and never comes back: the webhook alone tells us.
        await stack.complete(session["provider_session_id"], "confirm")
        await _wait_paid(stack, order)
        stack.service.stop()
        output = stack.service.log()

    lines = parse_lines(output)
    by_request: dict[str, list[dict[str, Any]]] = {}
    for entry in lines:
        if "request_id" in entry:
            by_request.setdefault(entry["request_id"], []).append(entry)

    # The order's creation: its access line, and the line its transaction logged once committed.
    created = by_request[order_request]
    access = [e for e in created if e["event"] == "request"]
    assert len(access) == 1, created
    assert access[0]["method"] == "POST" and access[0]["path"] == "/orders"
    assert access[0]["route"] == "/orders" and access[0]["status"] == 201
    assert access[0]["logger"] == "app.access" and access[0]["duration_ms"] > 0
    assert any(
        e["event"] == "order_transition" and e["order_id"] == order["id"] and e["to_status"] == "pending"
        for e in created
    ), created

    # Opening the session: its lines carry the order id bound by the service, its access line too.
    session_lines = [e for e in lines if e.get("path") == f"/orders/{order['id']}/payment-session"]
    assert len(session_lines) == 1 and session_lines[0]["order_id"] == order["id"]
    assert session_lines[0]["route"] == "/orders/{order_id}/payment-session"

    # The webhook: accepted (new), in the request that received it, whose access line says 200.
    accepted = [e for e in lines if e["event"] == "webhook_accepted"]
    assert accepted and accepted[0]["provider"] == "fintecture" and accepted[0]["duplicate"] is False
    assert accepted[0]["provider_session_id"] == session["provider_session_id"]
    webhook_access = [e for e in by_request[accepted[0]["request_id"]] if e["event"] == "request"]
    assert [(e["method"], e["path"], e["status"]) for e in webhook_access] == [("POST", "/webhook", 200)]

    # The move to paid, by the webhook, once.
    paid = [e for e in lines if e["event"] == "order_transition" and e["to_status"] == "paid"]
    assert len(paid) == 1, paid
    assert paid[0]["order_id"] == order["id"] and paid[0]["provider"] == "fintecture"
    assert paid[0]["source"] == "webhook" and paid[0]["from_status"] in ("awaiting_payment", "processing")

    # The server's own lines are JSON too; each provider call has one line, without query values.
    loggers = {e["logger"] for e in lines}
    assert {"uvicorn.error", "app.providers.transport", "app.access", "app.payments.writer"} <= loggers, (
        loggers
    )
    calls = [e for e in lines if e["event"] == "provider_request"]
    assert {(e["provider"], e["method"], e["status"]) for e in calls} >= {("fintecture", "POST", 200)}, calls
    assert all("?" not in e["path"] and "=" not in e["path"] for e in calls)

    sample = Path(os.environ.get("JSON_LOG_SAMPLE", "/tmp/checkout-json-log-sample.jsonl"))
    sample.write_text(output)


async def test_the_request_id_is_kept_when_plain_and_replaced_otherwise(stack: Stack) -> None:
    url = f"{stack.service_url}/products"
    for kept in ("req-123", "0f8fad5b-d9cb-469f-a165-70867728950e", "a" * 128, "trace:span.1_2"):
        response = await stack.http.get(url, headers={"X-Request-ID": kept})
        assert response.status_code == 200
        assert response.headers["x-request-id"] == kept
    for refused in ("a" * 129, "two words", "<script>", "semi;colon", "é-accent", ""):
        response = await stack.http.get(url, headers={"X-Request-ID": refused.encode()})
        assert response.status_code == 200
        made = response.headers["x-request-id"]
        assert made != refused and len(made) == HEX_ID and int(made, 16) >= 0
    # Without one, each request gets its own.
    first, second = [(await stack.http.get(url)).headers["x-request-id"] for _ in range(2)]
    assert first != second
    # Error answers carry it too: a 404, a 422, and the 431 the server itself makes.
    missing = await stack.http.get(f"{stack.service_url}/nowhere", headers={"X-Request-ID": "lost-1"})
    assert missing.status_code == 404 and missing.headers["x-request-id"] == "lost-1"
    invalid = await stack.http.post(
        f"{stack.service_url}/orders", json={"items": []}, headers={"X-Request-ID": "bad-order"}
    )
    assert invalid.status_code == 422 and invalid.headers["x-request-id"] == "bad-order"
    huge = await stack.http.get(url, headers={"X-Padding": "x" * 20_000})
    assert huge.status_code == 431 and len(huge.headers["x-request-id"]) == HEX_ID


async def test_the_unhandled_error_answer_carries_the_request_id(stack: Stack) -> None:
    # A route that fails: the JSON 500 quotes the request's own id, header and body alike.
    async def broken() -> None:
        raise RuntimeError("boom")

    stack.service.add_api_route("/_broken", broken)
    response = await stack.http.get(f"{stack.service_url}/_broken", headers={"X-Request-ID": "fail-42"})
    assert response.status_code == 500
    assert response.headers["x-request-id"] == "fail-42"
    assert response.json()["error"]["request_id"] == "fail-42"


async def test_migrations_log_json_only(server_url: str, tmp_path: Path) -> None:
    name = f"checkout_logs_{os.getpid()}"
    admin_url = with_database(server_url, "postgres")
    await _admin(admin_url, f'CREATE DATABASE "{name}"')
    try:
        env = {k: v for k, v in os.environ.items() if k.upper() not in every_env_name()}
        env |= {"DATABASE_URL": with_database(server_url, name), "PYTHONPATH": str(ROOT), "LOG_LEVEL": "INFO"}
        done = subprocess.run(
            [sys.executable, "-m", "app.cli", "migrate"],
            cwd=tmp_path,  # no .env there
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        await _admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    assert done.returncode == 0, done.stderr[-3000:]
    lines = parse_lines(done.stdout) + parse_lines(done.stderr)
    upgrades = [
        e for e in lines if e["logger"] == "alembic.runtime.migration" and "Running upgrade" in e["event"]
    ]
    assert len(upgrades) >= 6
    migrated = [e for e in lines if e["event"] == "database_migrated"]
    assert len(migrated) == 1 and migrated[0]["revision"]


def test_a_command_that_fails_says_so_in_json(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k.upper() not in every_env_name()}
    env |= {"PYTHONPATH": str(ROOT), "DATABASE_URL": "postgresql://postgres@127.0.0.1:1/none"}
    for argv, code in ((["nonsense"], 2), (["events", "replay"], 1), (["migrate"], 1)):
        done = subprocess.run(
            [sys.executable, "-m", "app.cli", *argv], cwd=tmp_path, env=env, capture_output=True, text=True
        )
        assert done.returncode == code, (argv, done.stderr[-2000:])
        lines = parse_lines(done.stderr)
        assert lines[-1]["level"] == "error" and lines[-1]["event"] in ("usage_error", "command_failed")
    assert lines[-1]["exc_type"] and "Traceback" in lines[-1]["exception"]  # migrate: no database
