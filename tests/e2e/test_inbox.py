"""The inbox worker: leases that outlive a killed worker, one provider read per payment however
many deliveries name it (the claims themselves: tests/integration/test_inbox_claims.py)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import func, select

from app.models import InboxOutcome, OrderTransition, ProviderEvent
from app.orders.states import OrderStatus
from tests.conftest import ROOT
from tests.e2e.conftest import Stack, StackFactory


@pytest.fixture
async def silent_provider() -> AsyncIterator[str]:
    """A TCP server that accepts connections and never answers: a provider that hangs."""
    connections: list[asyncio.StreamWriter] = []

    async def hold(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    host, port = server.sockets[0].getsockname()[:2]
    yield f"http://{host}:{port}"
    for writer in connections:
        writer.close()
    server.close()
    await server.wait_closed()


async def _pending_events(stack: Stack) -> list[ProviderEvent]:
    async with stack.sessionmaker() as db:
        return list(await db.scalars(select(ProviderEvent).where(ProviderEvent.processed_at.is_(None))))


async def test_a_killed_workers_leases_expire_and_each_event_is_applied_once(
    stack_factory: StackFactory, silent_provider: str
) -> None:
    lease = 5
    stack = await stack_factory(workers_enabled=False, inbox_lease_seconds=lease)
    paying = [await stack.paying_order() for _ in range(3)]
    for _, session in paying:
        await stack.drive(session["provider_session_id"], "payment_created", "completed")
    await stack.flush_webhooks()
    assert len(await _pending_events(stack)) == 3

    # A second process claims the events, then hangs on a provider that never answers.
    env = {
        **os.environ,
        "DATABASE_URL": stack.settings.database_url,
        "FINTECTURE_APP_ID": stack.fintecture.app_id,
        "FINTECTURE_APP_SECRET": stack.fintecture.app_secret.get_secret_value(),
        "FINTECTURE_PRIVATE_KEY": stack.fintecture.private_key.get_secret_value(),
        "FINTECTURE_API_URL": silent_provider,
        "PROVIDER_TIMEOUT_SECONDS": "120",
        "INBOX_LEASE_SECONDS": str(lease),
        "LOG_LEVEL": "WARNING",
    }
    worker = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.support.inbox_worker", cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            events = await _pending_events(stack)
            if events and all(e.claimed_until is not None for e in events):
                break
            assert worker.returncode is None, "the worker exited before claiming"
            assert time.monotonic() < deadline, "the worker did not claim the events"
            await asyncio.sleep(0.05)
    finally:
        worker.send_signal(signal.SIGKILL)
        await worker.wait()
    claimed_at = time.monotonic()

    # While the dead worker's leases last, nobody else takes its events.
    drained = await stack.service.state.workers.drain_inbox()
    assert (drained.applied, drained.retried) == (0, 0)
    assert len(await _pending_events(stack)) == 3

    while await _pending_events(stack):
        assert time.monotonic() - claimed_at < lease + 20, "the leases never expired"
        await stack.service.state.workers.drain_inbox()
        await asyncio.sleep(0.2)

    async with stack.sessionmaker() as db:
        events = list(await db.scalars(select(ProviderEvent)))
        paid = await db.scalar(
            select(func.count())
            .select_from(OrderTransition)
            .where(OrderTransition.to_status == OrderStatus.PAID)
        )
    assert [(e.outcome, e.attempts) for e in events] == [(InboxOutcome.APPLIED, 2)] * 3
    assert paid == 3
    for order, _ in paying:
        assert await stack.order_status(order["id"]) == "paid"


async def test_deliveries_for_one_payment_cost_one_provider_read(stack_factory: StackFactory) -> None:
    stack = await stack_factory(workers_enabled=False)
    order, session = await stack.paying_order()
    for status, transfer in (("payment_pending", "pending"), ("payment_created", "processing")):
        await stack.drive(session["provider_session_id"], status, transfer)
    await stack.drive(session["provider_session_id"], "payment_created", "completed")
    await stack.flush_webhooks()
    events = await _pending_events(stack)
    assert len(events) >= 3

    reads_before = await _payment_reads(stack)
    drained = await stack.service.state.workers.drain_inbox()
    assert drained.applied == len(events)
    assert await _payment_reads(stack) - reads_before == 1
    assert await stack.order_status(order["id"]) == "paid"
    assert await _pending_events(stack) == []


async def _payment_reads(stack: Stack) -> int:
    return sum(
        1
        for r in await stack.api_requests()
        if r["method"] == "GET" and r["path"].startswith("/pis/v2/payments/")
    )
