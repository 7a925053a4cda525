"""The service's own PostgreSQL stops in the middle of traffic and comes back.

While it is down, every request is answered within 5 s by a JSON 503 (`database_unavailable`, with
Retry-After), webhooks included, so the provider retries them; nothing the service acknowledged is
lost; the background workers log the outage once and carry on by themselves; and every order the
payer paid ends `paid` through exactly one transition. A server restart with nobody using the
database costs no request anything either, although connections are not pinged on checkout.
"""

from __future__ import annotations

import asyncio
import collections
import json
import random
import statistics
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from alembic import command
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from app.devdb import with_database
from app.migrations_info import alembic_config
from app.orders.states import OrderStatus
from tests.support.private_postgres import PrivatePostgres
from tests.support.process_stack import ProcessStack, process_stack

OUTAGE_SECONDS = 8.0
ANSWER_LIMIT_SECONDS = 5.0
SUCCESS = {200, 201, 303}


@pytest.fixture
async def database() -> AsyncIterator[tuple[PrivatePostgres, str]]:
    """A PostgreSQL of this test's own (it will be stopped), with the service's database migrated."""
    server = await asyncio.to_thread(PrivatePostgres)
    try:
        await asyncio.to_thread(server.start)
        admin = create_async_engine(server.url, isolation_level="AUTOCOMMIT")
        async with admin.connect() as conn:
            await conn.execute(text("CREATE DATABASE checkout"))
        await admin.dispose()
        url = with_database(server.url, "checkout")
        await asyncio.to_thread(command.upgrade, alembic_config(url), "head")
        yield server, url
    finally:
        await asyncio.to_thread(server.destroy)


@dataclass
class Answer:
    kind: str
    started: float
    finished: float
    status: int
    content_type: str
    body: Any
    retry_after: str | None

    @property
    def seconds(self) -> float:
        return self.finished - self.started


class Traffic:
    """Clients looping over the service's endpoints, every answer recorded with its timing."""

    def __init__(self, stack: ProcessStack, seed: int) -> None:
        self.stack = stack
        self.random = random.Random(seed)
        self.answers: list[Answer] = []
        self.created: list[dict[str, Any]] = []  # orders acknowledged with 201
        self.opened: list[tuple[dict[str, Any], dict[str, Any]]] = []  # sessions acknowledged with 201
        self.confirmed: set[str] = set()  # order ids the payer paid at the provider
        self.rejected: set[str] = set()
        self.stop = asyncio.Event()

    async def request(self, kind: str, method: str, url: str, **kwargs: Any) -> Answer:
        started = time.monotonic()
        response = await self.stack.http.request(method, url, **kwargs)
        finished = time.monotonic()
        content_type = response.headers.get("content-type", "")
        body = response.json() if content_type == "application/json" else response.text
        answer = Answer(
            kind,
            started,
            finished,
            response.status_code,
            content_type,
            body,
            response.headers.get("retry-after"),
        )
        self.answers.append(answer)
        return answer

    async def loop(self, step: Callable[[], Awaitable[None]]) -> None:
        while not self.stop.is_set():
            await step()
            await asyncio.sleep(self.random.uniform(0.02, 0.08))

    async def browse(self) -> None:
        await self.request("GET /products", "GET", f"{self.stack.url}/products")

    async def buy(self) -> None:
        placed = await self.request(
            "POST /orders",
            "POST",
            f"{self.stack.url}/orders",
            json={
                "currency": "EUR",
                "items": [{"sku": "SKU-LAMP", "quantity": 1}],
                "customer": {"name": "Camille Martin", "email": "camille@example.com"},
            },
        )
        if placed.status != 201:
            return
        order = placed.body
        self.created.append(order)
        opened = await self.request(
            "POST /orders/{id}/payment-session",
            "POST",
            f"{self.stack.url}/orders/{order['id']}/payment-session",
            headers={"Authorization": f"Bearer {order['access_token']}"},
            json={},
        )
        if opened.status == 201:
            self.opened.append((order, opened.body))

    async def read_order(self) -> None:
        if self.created:
            order = self.random.choice(self.created)
            await self.request(
                "GET /orders/{id}",
                "GET",
                f"{self.stack.url}/orders/{order['id']}",
                headers={"Authorization": f"Bearer {order['access_token']}"},
            )

    async def list_orders(self) -> None:
        await self.request(
            "GET /orders", "GET", f"{self.stack.url}/orders?status=paid", headers=self.stack.admin
        )

    async def pay(self) -> None:
        """A payer decides at the provider (whose webhook follows) and comes back through /callback."""
        unpaid = [
            (order, session)
            for order, session in self.opened
            if order["id"] not in self.confirmed | self.rejected
        ]
        if not unpaid:
            return
        order, session = self.random.choice(unpaid)
        outcome = "reject" if self.random.random() < 0.2 else "confirm"
        back = await self.stack.complete(session["provider_session_id"], outcome)
        (self.rejected if outcome == "reject" else self.confirmed).add(order["id"])
        await self.request("GET /callback", "GET", back, follow_redirects=False)


async def _settled(stack: ProcessStack, traffic: Traffic, timeout: float) -> None:
    """Every delivery delivered, every stored event processed, every payer's decision applied."""
    deadline = time.monotonic() + timeout
    while True:
        deliveries = await stack.deliveries()
        statuses = await stack.order_statuses()
        if (
            all(d["state"] == "delivered" for d in deliveries)
            and await stack.unprocessed_events() == 0
            and all(statuses[order_id] == "paid" for order_id in traffic.confirmed)
            and all(statuses[order_id] == "failed" for order_id in traffic.rejected)
        ):
            return
        assert time.monotonic() < deadline, "not settled: " + json.dumps(
            {
                "deliveries": collections.Counter(d["state"] for d in deliveries),
                "unprocessed": await stack.unprocessed_events(),
                "confirmed": collections.Counter(statuses[o] for o in traffic.confirmed),
            }
        )
        await asyncio.sleep(0.25)


def _assert_error_shape(answer: Answer) -> None:
    assert answer.content_type == "application/json", answer
    assert answer.body["error"]["code"] in {"database_unavailable", "database_busy"}, answer
    assert answer.retry_after is not None and int(answer.retry_after) > 0, answer


def _error_lines(log: str) -> list[str]:
    """The service's error lines (an unexpected answer's cause), the last few."""
    return [line for line in log.splitlines() if '"level": "error"' in line][-5:]


async def test_a_database_outage_mid_traffic(database: tuple[PrivatePostgres, str]) -> None:
    server, database_url = database
    async with process_stack(
        database_url,
        webhook_retry_base_delay=0.2,
        INBOX_POLL_SECONDS="0.2",
        INBOX_LEASE_SECONDS="5",
        SWEEPER_INTERVAL_SECONDS="1",
        SWEEPER_STALE_AFTER_SECONDS="600",
    ) as stack:
        await stack.put_product()
        traffic = Traffic(stack, seed=20261)
        for _ in range(10):
            order, session = await stack.paying_order()
            traffic.created.append(order)
            traffic.opened.append((order, session))
        before = await stack.table_counts()

        clients = [
            asyncio.create_task(traffic.loop(step))
            for step in (
                traffic.browse,
                traffic.buy,
                traffic.buy,
                traffic.read_order,
                traffic.list_orders,
                traffic.pay,
            )
        ]
        try:
            await asyncio.sleep(3)
            await asyncio.to_thread(server.stop, "fast")
            down = time.monotonic()
            await asyncio.sleep(OUTAGE_SECONDS)
            restarting = time.monotonic()
            await asyncio.to_thread(server.start)
            up = time.monotonic()
            await asyncio.sleep(4)
        finally:
            traffic.stop.set()
            await asyncio.gather(*clients)

        await _settled(stack, traffic, timeout=45)
        after = await stack.table_counts()
        paid_once = await stack.transitions_to(OrderStatus.PAID)
        statuses = await stack.order_statuses()
        stored = await stack.stored_delivery_ids()
        deliveries = await stack.deliveries()
        stack.service.stop()
        log = stack.service.log()

    answers = traffic.answers
    during = [a for a in answers if a.started >= down and a.finished <= restarting]
    after_recovery = [a for a in answers if a.started >= up]
    webhook_codes = collections.Counter(a["status_code"] for d in deliveries for a in d["attempts"])
    print(
        "\ndatabase outage:",
        json.dumps(
            {
                "outage_seconds": round(restarting - down, 1),
                "requests": len(answers),
                "requests_during_outage": len(during),
                "statuses_during_outage": collections.Counter(a.status for a in during),
                "seconds_during_outage": {
                    "median": round(statistics.median(a.seconds for a in during), 4),
                    "max": round(max(a.seconds for a in during), 4),
                },
                "statuses_overall": collections.Counter(a.status for a in answers),
                "max_seconds_overall": round(max(a.seconds for a in answers), 3),
                "requests_after_recovery": len(after_recovery),
                "webhook_attempts": webhook_codes,
                "rows_before": before,
                "rows_after": after,
                "orders_paid": len(traffic.confirmed),
                "orders_failed": len(traffic.rejected),
            },
            default=dict,
        ),
    )

    # Every answer in time; every failure a JSON 503 the client may retry.
    assert len(during) >= 50
    for answer in answers:
        assert answer.seconds < ANSWER_LIMIT_SECONDS, answer
        assert answer.status in SUCCESS or answer.status == 503, (answer, _error_lines(log))
        if answer.status == 503:
            _assert_error_shape(answer)
    # While the database is down, nothing succeeds by accident: every kind of request is a 503.
    assert {a.status for a in during} == {503}
    assert {a.kind for a in during} >= {
        "GET /products",
        "POST /orders",
        "GET /orders/{id}",
        "GET /orders",
        "GET /callback",
    }
    assert all(a.body["error"]["code"] == "database_unavailable" for a in during)
    # Back up: no request fails any more, not even the first ones on connections from before.
    assert after_recovery and {a.status for a in after_recovery} <= SUCCESS, collections.Counter(
        a.status for a in after_recovery
    )

    # Webhooks met the outage, got non-2xx answers, and were delivered later: none was lost.
    # (An attempt with no status is a transport error, such as a keep-alive connection the server
    # closed just as the provider reused it; it is retried like a 503.)
    assert webhook_codes[503] > 0 and set(webhook_codes) - {None} <= {200, 503}, webhook_codes
    delivered = {d["request_id"] for d in deliveries if any(a["status_code"] == 200 for a in d["attempts"])}
    assert delivered and delivered <= stored
    # Every acknowledged order and session is there; every payment ended once, as the payer chose.
    assert {order["id"] for order in traffic.created} <= set(statuses)
    assert after["payment_sessions"] >= len(traffic.opened)
    assert after["orders"] == before["orders"] + len(traffic.created) - 10
    assert traffic.confirmed and traffic.rejected
    assert {order_id: paid_once.get(order_id) for order_id in traffic.confirmed} == dict.fromkeys(
        traffic.confirmed, 1
    )
    assert set(paid_once) == traffic.confirmed

    # The log tells of the outage in a few lines, not a traceback per request.
    events = [json.loads(line).get("event") for line in log.splitlines() if line.startswith("{")]
    assert "Exception in ASGI application" not in log
    assert "unhandled_error" not in events
    assert 1 <= events.count("database_unavailable") <= OUTAGE_SECONDS / 10 + 2, events
    assert events.count("inbox_worker_database_unavailable") == 1
    assert events.count("inbox_worker_recovered") == 1
    assert events.count("sweeper_database_unavailable") == events.count("sweeper_recovered") >= 1


async def test_a_restart_while_idle_costs_no_request(database: tuple[PrivatePostgres, str]) -> None:
    """Pooled connections are not pinged: the ones a restarted server closed are replaced when
    they are checked out, so the first requests after the restart succeed like any other."""
    server, database_url = database
    async with process_stack(database_url, SWEEPER_INTERVAL_SECONDS="3600") as stack:
        await stack.put_product()

        async def burst() -> list[int]:
            responses = await asyncio.gather(
                *(stack.http.get(f"{stack.url}/products") for _ in range(12)), stack.post_order()
            )
            return [r.status_code for r in responses]

        # Fill the pool with connections, then restart the server under them.
        assert set(await burst()) == {200, 201}
        for mode in ("fast", "immediate"):
            await asyncio.to_thread(server.stop, mode)
            await asyncio.to_thread(server.start)
            assert set(await burst()) == {200, 201}, mode
        stack.service.stop()
        log = stack.service.log()
    # No request met the restart (the workers, polling through it, may have).
    events = [json.loads(line)["event"] for line in log.splitlines() if line.startswith("{")]
    assert "database_unavailable" not in events
