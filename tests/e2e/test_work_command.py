"""`checkout work`: the workers in a process of their own, beside API processes that only store.

The API runs with WORKERS_ENABLED=false (`checkout serve`, a child process): it verifies and stores
the provider's webhook and answers, and nothing applies it. `checkout work`, started next, applies
it (the order is paid, once), and stops cleanly on SIGTERM.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any

from app.orders.states import OrderStatus
from tests.support.process_stack import ProcessStack, process_stack
from tests.support.settings_env import every_env_name


async def _order_status(stack: ProcessStack, order: dict[str, Any]) -> str:
    response = await stack.http.get(
        f"{stack.url}/orders/{order['id']}", headers={"Authorization": f"Bearer {order['access_token']}"}
    )
    assert response.status_code == 200, response.text
    return str(response.json()["status"])


async def _wait_for(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


async def test_a_work_process_applies_what_the_api_processes_stored(
    database_url: str, clean_database: str
) -> None:
    async with process_stack(database_url, WORKERS_ENABLED="false", INBOX_POLL_SECONDS="0.2") as stack:
        await stack.put_product()
        placed = await stack.post_order()
        assert placed.status_code == 201, placed.text
        order = placed.json()
        opened = await stack.open_session(order)
        assert opened.status_code == 201, opened.text
        # The payer confirms at the provider and never comes back: only the webhook tells us.
        await stack.complete(opened.json()["provider_session_id"], "confirm")

        async def stored() -> bool:
            return await stack.unprocessed_events() >= 1

        await _wait_for(stored, 20, "the webhook to be stored")
        await asyncio.sleep(1.0)  # several poll intervals: nothing in the API process applies it
        assert await stack.unprocessed_events() >= 1
        assert await _order_status(stack, order) == "awaiting_payment"

        worker = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "work", "--wait-for-db", "10"],
            cwd=stack.service.workdir,
            env=stack.service.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:

            async def paid() -> bool:
                assert worker.poll() is None, worker.communicate(timeout=5)[0]
                return await _order_status(stack, order) == "paid"

            await _wait_for(paid, 30, "the work process to apply the webhook")
            assert await stack.unprocessed_events() == 0
            assert await stack.transitions_to(OrderStatus.PAID) == {order["id"]: 1}
            worker.send_signal(signal.SIGTERM)
            output, _ = worker.communicate(timeout=20)
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.wait(timeout=10)
        assert worker.returncode == 0, output

    lines = [json.loads(line) for line in output.splitlines()]  # every line is JSON
    events = [line["event"] for line in lines]
    assert events.index("work_started") < events.index("work_stopping") < events.index("work_stopped")
    paid_lines = [e for e in lines if e["event"] == "order_transition" and e["to_status"] == "paid"]
    assert [(e["order_id"], e["source"]) for e in paid_lines] == [(order["id"], "webhook")]


def test_work_refuses_a_database_it_cannot_use() -> None:
    inherited = {k: v for k, v in os.environ.items() if k.upper() not in every_env_name()}
    env = {**inherited, "DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"}
    result = subprocess.run(
        [sys.executable, "-m", "app.cli", "work"],
        env=env,
        cwd=tempfile.mkdtemp(prefix="checkout-work-"),  # no .env file
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    refusal = [json.loads(line) for line in result.stderr.splitlines() if "work_refused" in line]
    assert len(refusal) == 1 and "127.0.0.1:1" in refusal[0]["reason"], result.stderr
