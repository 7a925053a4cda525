"""The service process is killed with SIGKILL five times while payers pay and the provider's
webhooks flow, and started again each time. Whatever each kill interrupted (a webhook being stored,
an inbox lease held, a payment being applied, a payer's return), every delivery ends up stored and
applied, and every order the payer paid ends `paid` through exactly one transition."""

from __future__ import annotations

import asyncio
import collections
import json
import random
import time
from typing import Any

import httpx

from app.orders.states import OrderStatus
from tests.support.process_stack import ProcessStack, process_stack

KILLS = 5
WAVE = 4  # payers per life of the service


async def _pay(
    stack: ProcessStack,
    order: dict[str, Any],
    session: dict[str, Any],
    outcome: str,
    progress: bool,
    callbacks: collections.Counter[str],
) -> None:
    """A payer decides at the provider and comes back through /callback (reaching a live service
    or not); a paid transfer may then progress at the bank (one more webhook about it)."""
    psid = session["provider_session_id"]
    back = await stack.complete(psid, outcome)
    try:
        answer = await stack.http.get(back, follow_redirects=False)
        callbacks[str(answer.status_code)] += 1
    except httpx.TransportError:  # the service was down: the payer's browser shows an error
        callbacks["no answer"] += 1
    if progress:
        moved = await stack.http.post(
            f"{stack.simulator_url}/_sim/sessions/{psid}/status",
            json={"status": "payment_created", "transfer_state": "received"},
        )
        assert moved.status_code == 200, moved.text


async def _stored_at_least(stack: ProcessStack, count: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while len(await stack.stored_delivery_ids()) < count:
        assert time.monotonic() < deadline, f"fewer than {count} webhooks stored after {timeout}s"
        await asyncio.sleep(0.02)


async def test_kill_9_while_webhooks_flow_pays_each_order_once(
    database_url: str, clean_database: str
) -> None:
    seed = 7319
    rng = random.Random(seed)
    async with process_stack(
        database_url,
        webhook_retry_base_delay=0.1,
        INBOX_POLL_SECONDS="0.1",
        INBOX_LEASE_SECONDS="5",
        SWEEPER_INTERVAL_SECONDS="3600",
    ) as stack:
        await stack.put_product()
        sessions = [await stack.paying_order() for _ in range(WAVE * (KILLS + 1))]
        before = await stack.table_counts()
        confirmed: set[str] = set()
        rejected: set[str] = set()
        callbacks: collections.Counter[str] = collections.Counter()

        started = time.monotonic()
        for life in range(KILLS + 1):
            stored = len(await stack.stored_delivery_ids())
            wave = []
            for order, session in sessions[life * WAVE : (life + 1) * WAVE]:
                outcome = "reject" if rng.random() < 0.2 else "confirm"
                (rejected if outcome == "reject" else confirmed).add(order["id"])
                progress = outcome == "confirm" and rng.random() < 0.5
                wave.append(_pay(stack, order, session, outcome, progress, callbacks))
            payers = asyncio.gather(*wave)
            if life == KILLS:
                await payers
                break
            # Kill once part of this wave's webhooks is stored: the rest is on the wire, in the
            # inbox or being applied.
            await _stored_at_least(stack, stored + rng.randint(1, WAVE - 1))
            stack.service.kill()
            await payers
            await asyncio.sleep(rng.uniform(0.1, 0.5))  # deliveries meanwhile meet a closed port
            await stack.service.start()
        kill_window = time.monotonic() - started

        deadline = time.monotonic() + 60
        while True:
            deliveries = await stack.deliveries()
            statuses = await stack.order_statuses()
            if (
                all(d["state"] == "delivered" for d in deliveries)
                and await stack.unprocessed_events() == 0
                and all(statuses[order_id] == "paid" for order_id in confirmed)
                and all(statuses[order_id] == "failed" for order_id in rejected)
            ):
                break
            assert time.monotonic() < deadline, collections.Counter(d["state"] for d in deliveries)
            await asyncio.sleep(0.25)
        after = await stack.table_counts()
        paid = await stack.transitions_to(OrderStatus.PAID)
        failed = await stack.transitions_to(OrderStatus.FAILED)
        stored = await stack.stored_delivery_ids()
        kills, starts = stack.service.kills, stack.service.starts

    attempts = collections.Counter(
        str(a["status_code"] or "no answer") for d in deliveries for a in d["attempts"]
    )
    print(
        "\nservice crash:",
        json.dumps(
            {
                "seed": seed,
                "kills": kills,
                "starts": starts,
                "kill_window_seconds": round(kill_window, 1),
                "webhook_deliveries": len(deliveries),
                "webhook_attempts": attempts,
                "callbacks": callbacks,
                "rows_before": before,
                "rows_after": after,
                "orders_paid": len(confirmed),
                "orders_failed": len(rejected),
                "paid_transitions": sum(paid.values()),
            }
        ),
    )
    assert kills == KILLS and starts == KILLS + 1
    # Some deliveries met a dead service and were retried: the kills did hit the flow.
    assert attempts["no answer"] > 0, attempts
    # Every delivery was acknowledged once stored, and is stored once.
    assert {d["request_id"] for d in deliveries} <= stored
    assert after["provider_events"] == len(stored) == len({d["request_id"] for d in deliveries})
    # Each order moved once to the state its payer chose, and never twice.
    assert confirmed and rejected
    assert paid == dict.fromkeys(confirmed, 1)
    assert failed == dict.fromkeys(rejected, 1)
    assert after["orders"] == before["orders"] == len(sessions)
